//! DPoP proofs (RFC 9449 section 4.3): a JWT the client signs with its own key for one request,
//! naming the method and URL, fresh (`iat` within `--dpop-max-age`), used once (`jti`), and at a
//! resource bound to the access token (`ath`). The key's thumbprint (`jkt`) is what tokens are
//! bound to.
//!
//! Replayed proofs are caught by a bounded per-process cache of the `jti`s seen in the last two
//! `--dpop-max-age` (an `iat` may lie that far either side of the clock): a proof replayed to the
//! node that saw it is refused; one replayed to another node within that window is not (README,
//! DPoP).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::Timestamp;
use crate::jose::{self, Alg, PublicKey};

/// The algorithms a proof may be signed with (advertised as `dpop_signing_alg_values_supported`).
pub const DPOP_ALGS: [Alg; 3] = [Alg::ES256, Alg::EdDSA, Alg::RS256];

/// How many proof `jti`s a node remembers at most. Each is 32 bytes plus the cache's own
/// overhead; at the bound the oldest go first, which are the ones closest to being refused by
/// their `iat` anyway.
pub const REPLAY_CAPACITY: u64 = 1_000_000;

/// Longest `jti` accepted: bounds what a proof makes the replay cache hash.
const MAX_JTI_LEN: usize = 256;

/// Why a proof was refused (the reason goes to the security log, never to the client).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("not a DPoP proof JWT")]
    Malformed,
    #[error("typ is not dpop+jwt")]
    Type,
    #[error("alg is not one of ES256, EdDSA, RS256, or the jwk is not a public key of it")]
    Key,
    #[error("the signature does not verify with the jwk")]
    Signature,
    #[error("htm is not this request's method")]
    Method,
    #[error("htu is not this request's URL")]
    Url,
    #[error("iat is missing or too far from the server's clock")]
    Time,
    #[error("jti is missing or too long")]
    Jti,
    #[error("jti was used before")]
    Replay,
    #[error("ath does not match the access token")]
    AccessTokenHash,
}

/// A proof that verified: the thumbprint of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
}

/// The request a proof must describe.
pub struct ProofFor<'a> {
    pub method: &'a str,
    /// The endpoint's URL (the issuer and the path); query and fragment never count.
    pub url: &'a url::Url,
    /// At a resource: the access token the proof must name (`ath`).
    pub access_token: Option<&'a str>,
}

#[derive(Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    max_age: Duration,
    seen: moka::sync::Cache<[u8; 32], ()>,
}

impl DpopVerifier {
    pub fn new(max_age: Duration) -> Self {
        let seen = moka::sync::Cache::builder()
            .max_capacity(REPLAY_CAPACITY)
            .time_to_live(max_age.saturating_mul(2).max(Duration::from_secs(1)))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        Self {
            inner: Arc::new(Inner { max_age, seen }),
        }
    }

    /// Checks `proof` for the request `req` at `now`, and spends its `jti`.
    pub fn verify(&self, proof: &str, req: &ProofFor<'_>, now: Timestamp) -> Result<Proof, DpopError> {
        let jws = jose::parse_compact(proof).map_err(|_| DpopError::Malformed)?;
        if jws.header_str("typ") != Some("dpop+jwt") {
            return Err(DpopError::Type);
        }
        let alg = jws
            .header_str("alg")
            .and_then(Alg::parse)
            .filter(|a| DPOP_ALGS.contains(a))
            .ok_or(DpopError::Key)?;
        let jwk = jws.header.get("jwk").ok_or(DpopError::Key)?;
        // A private key in the header would be the client's mistake and our liability.
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| jwk.get(m).is_some())
        {
            return Err(DpopError::Key);
        }
        let key = PublicKey::from_jwk_for(alg, jwk).ok_or(DpopError::Key)?;
        jws.verify(&key).map_err(|_| DpopError::Signature)?;
        let claims = jws.claims().map_err(|_| DpopError::Malformed)?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        if text("htm") != Some(req.method) {
            return Err(DpopError::Method);
        }
        if !text("htu").is_some_and(|u| same_endpoint(u, req.url)) {
            return Err(DpopError::Url);
        }
        let iat = claims.get("iat").and_then(Value::as_i64).ok_or(DpopError::Time)?;
        let max_age = i64::try_from(self.inner.max_age.as_secs()).unwrap_or(i64::MAX);
        if iat.abs_diff(now.secs()) > max_age.unsigned_abs() {
            return Err(DpopError::Time);
        }
        if let Some(token) = req.access_token {
            let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            if text("ath") != Some(expected.as_str()) {
                return Err(DpopError::AccessTokenHash);
            }
        }
        let jti = text("jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or(DpopError::Jti)?;
        let jkt = key.thumbprint();
        // Keyed by the key and the jti: one client's jtis cannot spend another's.
        let mut h = Sha256::new();
        h.update(jkt.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        let entry = self.inner.seen.entry(h.finalize().into()).or_insert(());
        if !entry.is_fresh() {
            return Err(DpopError::Replay);
        }
        Ok(Proof { jkt })
    }
}

/// RFC 9449 section 4.3 item 9: `htu` names the endpoint, compared without query and fragment,
/// after the URL parser's normalisation (scheme and host case, default port).
fn same_endpoint(htu: &str, endpoint: &url::Url) -> bool {
    let Ok(u) = url::Url::parse(htu) else {
        return false;
    };
    u.scheme() == endpoint.scheme()
        && u.host() == endpoint.host()
        && u.port_or_known_default() == endpoint.port_or_known_default()
        && u.path() == endpoint.path()
}

/// A `dpop_jkt` authorize parameter: a base64url SHA-256 thumbprint (43 characters).
pub fn parse_jkt(s: &str) -> Option<String> {
    (s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_ignores_query_fragment_and_normalisation() {
        let endpoint = url::Url::parse("https://auth.example/auth/token").unwrap();
        for ok in [
            "https://auth.example/auth/token",
            "https://AUTH.example:443/auth/token?x=1#f",
        ] {
            assert!(same_endpoint(ok, &endpoint), "{ok}");
        }
        for bad in [
            "http://auth.example/auth/token",
            "https://auth.example:8443/auth/token",
            "https://auth.example/auth/token/",
            "https://other.example/auth/token",
            "/auth/token",
        ] {
            assert!(!same_endpoint(bad, &endpoint), "{bad}");
        }
    }

    #[test]
    fn jkt_parameters_are_thumbprints() {
        assert!(parse_jkt(&"a".repeat(43)).is_some());
        assert!(parse_jkt(&"a".repeat(42)).is_none());
        assert!(parse_jkt(&format!("{}=", "a".repeat(42))).is_none());
    }
}
