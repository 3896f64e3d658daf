//! `private_key_jwt` client authentication (RFC 7523 section 2.2, OpenID Connect Core 9): a JWT
//! the client signs with a key of its `jwks`, naming itself (`iss` = `sub` = client_id) and this
//! server (`aud`: the issuer or the token endpoint's URL), short-lived (`exp` at most
//! [`MAX_LIFETIME`] ahead) and used once (`jti`).
//!
//! Used `jti`s are kept in the store until their assertion expires (then swept): an assertion is
//! accepted once across every node.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::{Client, Timestamp, TokenHash};
use crate::jose::{Alg, Compact};
use crate::store::{Store, StoreError, UsedJtiRecord};

/// Longest an assertion may live: its `exp` at most this far ahead of the server's clock.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// How far a client's clock may run ahead for `iat` and `nbf`.
const SKEW_SECS: i64 = 30;

const MAX_JTI_LEN: usize = 256;

#[derive(Clone)]
pub struct ClientAssertions {
    inner: Arc<Inner>,
}

struct Inner {
    /// What `aud` may name: the issuer, the token endpoint's URL.
    audiences: Vec<String>,
    store: Arc<dyn Store>,
}

/// Why an assertion was refused: for the security log, or the store's failure.
pub enum Refused {
    Invalid(&'static str),
    Store(StoreError),
}

impl From<&'static str> for Refused {
    fn from(why: &'static str) -> Self {
        Self::Invalid(why)
    }
}

impl ClientAssertions {
    pub fn new(audiences: Vec<String>, store: Arc<dyn Store>) -> Self {
        Self {
            inner: Arc::new(Inner { audiences, store }),
        }
    }

    /// Checks `jws` (with its `claims`, read before the signature was checked) as `client`'s
    /// assertion at `now`, and spends its `jti`. The error says why, for the security log.
    pub async fn check(
        &self,
        client: &Client,
        jws: &Compact<'_>,
        claims: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<(), Refused> {
        let alg = jws
            .header_str("alg")
            .and_then(Alg::parse)
            .ok_or("assertion alg is not RS256, ES256 or EdDSA")?;
        let kid = jws.header_str("kid");
        let signed = client
            .jwks
            .iter()
            .filter(|k| k.key.alg() == alg && kid.is_none_or(|kid| k.kid.as_deref().is_none_or(|own| own == kid)))
            .any(|k| jws.verify(&k.key).is_ok());
        if !signed {
            return Err("assertion not signed by a key of the client's jwks".into());
        }
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        let id = &*client.client_id;
        if text("iss") != Some(id) || text("sub") != Some(id) {
            return Err("assertion iss and sub must be the client_id".into());
        }
        // One audience, this server (draft-ietf-oauth-rfc7523bis section 4): an assertion
        // naming others too could have been written for, and replayed from, one of them. A
        // one-element array is the same claim.
        let aud = match claims.get("aud") {
            Some(Value::String(a)) => Some(a.as_str()),
            Some(Value::Array(one)) if one.len() == 1 => one[0].as_str(),
            _ => None,
        };
        if !aud.is_some_and(|a| self.inner.audiences.iter().any(|x| x == a)) {
            return Err("assertion aud is not exactly the issuer or the token endpoint".into());
        }
        let now_s = now.secs();
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or("assertion has no exp")?;
        let max = i64::try_from(MAX_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        if exp <= now_s {
            return Err("assertion expired".into());
        }
        if exp - now_s > max {
            return Err("assertion exp too far ahead".into());
        }
        for early in ["iat", "nbf"] {
            if claims
                .get(early)
                .and_then(Value::as_i64)
                .is_some_and(|t| t > now_s + SKEW_SECS)
            {
                return Err("assertion iat or nbf in the future".into());
            }
        }
        let jti = text("jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or("assertion jti missing or too long")?;
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        let used = UsedJtiRecord {
            hash: TokenHash(h.finalize().into()),
            expires_at: Timestamp::from_millis(exp.saturating_mul(1000)),
        };
        match self.inner.store.spend_jti(&used).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("assertion jti used before".into()),
            Err(e) => Err(Refused::Store(e)),
        }
    }
}
