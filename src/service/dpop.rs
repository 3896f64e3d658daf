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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::jose::{Alg, PublicKey};

/// The algorithms a proof may be signed with (advertised as `dpop_signing_alg_values_supported`).
pub const DPOP_ALGS: [Alg; 3] = [Alg::ES256, Alg::EdDSA, Alg::RS256];

/// The default of `--dpop-replay-capacity`: how many proof `jti`s a node remembers at most.
/// Each is 32 bytes plus the cache's own overhead (about 100 bytes in all); at the bound the
/// oldest go first, which are the ones closest to being refused by their `iat` anyway, and
/// `/debug/health` counts them (`dpop_replay.evicted_unexpired`).
pub const REPLAY_CAPACITY: u64 = 1_000_000;

/// Longest `jti` accepted: bounds what a proof makes the replay cache hash.
const MAX_JTI_LEN: usize = 256;

/// Proof headers (a client's `typ`, `alg` and `jwk`, the same in each of its proofs) remembered
/// with their checked key and thumbprint, so a client's next proof skips the header's decoding,
/// the key's import and the thumbprint. Headers longer than [`MAX_CACHED_HEADER`] (an RSA key
/// of 4096 bits fits) are checked every time.
const KEY_CACHE_CAPACITY: u64 = 10_000;
const MAX_CACHED_HEADER: usize = 2_048;
const KEY_CACHE_IDLE: Duration = Duration::from_secs(600);

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

impl<'a> ProofFor<'a> {
    /// A form post to `url` (the token endpoint, PAR): no access token to name.
    pub fn post_to(url: &'a url::Url) -> Self {
        Self {
            method: "POST",
            url,
            access_token: None,
        }
    }
}

/// The replay cache as `/debug/health` shows it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ReplayReport {
    pub entries: u64,
    pub capacity: u64,
    /// How long a `jti` is remembered: twice `--dpop-max-age`.
    pub window_seconds: u64,
    /// `jti`s dropped for room before their window ended: a proof replayed after its `jti`
    /// went this way would not be caught. Anything but 0 asks for a larger
    /// `--dpop-replay-capacity`.
    pub evicted_unexpired: u64,
}

#[derive(Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    max_age: Duration,
    capacity: u64,
    seen: moka::sync::Cache<[u8; 32], ()>,
    evicted: Arc<AtomicU64>,
    keys: moka::sync::Cache<Box<str>, Arc<ProofKey>>,
}

/// A proof header that passed its checks: the key it carries and that key's thumbprint.
struct ProofKey {
    key: PublicKey,
    jkt: String,
}

/// The claims of a proof (RFC 9449 section 4.2); any others are ignored.
#[derive(serde::Deserialize)]
struct Claims {
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<Value>,
    jti: Option<String>,
    ath: Option<String>,
}

impl DpopVerifier {
    pub fn new(max_age: Duration, capacity: u64) -> Self {
        let evicted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evicted);
        let seen = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(max_age.saturating_mul(2).max(Duration::from_secs(1)))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let keys = moka::sync::Cache::builder()
            .max_capacity(KEY_CACHE_CAPACITY)
            .time_to_idle(KEY_CACHE_IDLE)
            .build();
        Self {
            inner: Arc::new(Inner {
                max_age,
                capacity,
                seen,
                evicted,
                keys,
            }),
        }
    }

    /// Checks `proof` for the request `req` at `now`, and spends its `jti`.
    pub fn verify(&self, proof: &str, req: &ProofFor<'_>, now: Timestamp) -> Result<Proof, DpopError> {
        let (header, rest) = proof.split_once('.').ok_or(DpopError::Malformed)?;
        let (claims, signature) = rest.split_once('.').ok_or(DpopError::Malformed)?;
        if signature.contains('.') {
            return Err(DpopError::Malformed);
        }
        let key = self.key_of(header)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| DpopError::Malformed)?;
        let signing_input = &proof[..header.len() + 1 + claims.len()];
        if !key.key.verify(signing_input.as_bytes(), &signature) {
            return Err(DpopError::Signature);
        }
        let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| DpopError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| DpopError::Malformed)?;
        if claims.htm.as_deref() != Some(req.method) {
            return Err(DpopError::Method);
        }
        // The URL as the server writes it is what clients send: no parse needed then.
        if !claims
            .htu
            .as_deref()
            .is_some_and(|u| u == req.url.as_str() || same_endpoint(u, req.url))
        {
            return Err(DpopError::Url);
        }
        let iat = claims.iat.as_ref().and_then(Value::as_i64).ok_or(DpopError::Time)?;
        let max_age = i64::try_from(self.inner.max_age.as_secs()).unwrap_or(i64::MAX);
        if iat.abs_diff(now.secs()) > max_age.unsigned_abs() {
            return Err(DpopError::Time);
        }
        if let Some(token) = req.access_token {
            let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            if claims.ath.as_deref() != Some(expected.as_str()) {
                return Err(DpopError::AccessTokenHash);
            }
        }
        let jti = claims
            .jti
            .as_deref()
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or(DpopError::Jti)?;
        // Keyed by the key and the jti: one client's jtis cannot spend another's.
        let mut h = Sha256::new();
        h.update(key.jkt.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        let entry = self.inner.seen.entry(h.finalize().into()).or_insert(());
        if !entry.is_fresh() {
            return Err(DpopError::Replay);
        }
        Ok(Proof { jkt: key.jkt.clone() })
    }

    /// [`DpopVerifier::verify`] for `client_id`'s request, with the refusal logged (its reason
    /// goes to the security log only) and answered as the contract says: `invalid_dpop_proof`,
    /// a 401 at a resource (a proof that names an access token), else a 400.
    pub fn check(&self, client_id: &str, proof: &str, req: &ProofFor<'_>, now: Timestamp) -> Result<Proof, ApiError> {
        let at_resource = req.access_token.is_some();
        self.verify(proof, req, now).map_err(|e| {
            tracing::info!(target: "security", client_id, reason = %e, "DPoP proof refused");
            ApiError::InvalidDpopProof { at_resource }
        })
    }

    /// The key of a proof header (base64url, as sent), from the cache of headers seen before
    /// or checked now: `typ`, `alg` one of [`DPOP_ALGS`], and a public `jwk` of that `alg`.
    fn key_of(&self, header: &str) -> Result<Arc<ProofKey>, DpopError> {
        if let Some(key) = self.inner.keys.get(header) {
            return Ok(key);
        }
        let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| DpopError::Malformed)?;
        let header_json: serde_json::Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| DpopError::Malformed)?;
        if header_json.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
            return Err(DpopError::Type);
        }
        let alg = header_json
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .filter(|a| DPOP_ALGS.contains(a))
            .ok_or(DpopError::Key)?;
        let jwk = header_json.get("jwk").ok_or(DpopError::Key)?;
        // A private key in the header would be the client's mistake and our liability.
        if ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .any(|m| jwk.get(m).is_some())
        {
            return Err(DpopError::Key);
        }
        let key = PublicKey::from_jwk_for(alg, jwk).ok_or(DpopError::Key)?;
        let jkt = key.thumbprint();
        let key = Arc::new(ProofKey { key, jkt });
        if header.len() <= MAX_CACHED_HEADER {
            self.inner.keys.insert(header.into(), Arc::clone(&key));
        }
        Ok(key)
    }

    /// The replay cache's size and what it had to drop.
    pub fn report(&self) -> ReplayReport {
        let i = &self.inner;
        i.seen.run_pending_tasks();
        ReplayReport {
            entries: i.seen.entry_count(),
            capacity: i.capacity,
            window_seconds: i.max_age.saturating_mul(2).as_secs(),
            evicted_unexpired: i.evicted.load(Ordering::Relaxed),
        }
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
