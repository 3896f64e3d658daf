//! DPoP proofs (RFC 9449 section 4) as a client makes them, for `userinfo-dpop`: the load tool
//! plays the client, so it signs with the server crate's own `jose` (the correctness tests make
//! their proofs with an outside library; here only the cost matters). Each proof has a fresh
//! `jti`, `iat` = now, `htm`, `htu`, and at a resource `ath`; its header carries `typ`
//! `dpop+jwt`, `alg` and the public `jwk`.

use anyhow::Context;
use authplane::jose::{Alg, PrivateKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A client's DPoP key, with its proofs' header encoded once.
pub struct ProofKey {
    key: PrivateKey,
    /// base64url of the header JSON, followed by the `.`.
    header: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

impl ProofKey {
    pub fn generate(alg: Alg) -> anyhow::Result<Self> {
        let (key, _) = PrivateKey::generate(alg).with_context(|| format!("generating a {alg} key"))?;
        // The JWK as the server's JWKS writes it (`kid` and `use` included: the server ignores
        // them; only private members are refused).
        let jwk = key.public_key().jwk("load");
        let header = serde_json::to_vec(&serde_json::json!({ "typ": "dpop+jwt", "alg": alg, "jwk": jwk }))?;
        let mut encoded = URL_SAFE_NO_PAD.encode(header);
        encoded.push('.');
        Ok(Self { key, header: encoded })
    }

    /// A proof for `htm` `htu` at `now_secs`; with `access_token`, its `ath`.
    pub fn proof(&self, htm: &str, htu: &str, access_token: Option<&str>, now_secs: i64) -> anyhow::Result<String> {
        let claims = Claims {
            jti: authplane::crypto::random_uuid().to_string(),
            htm,
            htu,
            iat: now_secs,
            ath: access_token.map(|t| URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes()))),
        };
        let claims = serde_json::to_vec(&claims)?;
        let mut out = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 400);
        out.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(&claims, &mut out);
        let sig = self.key.sign(out.as_bytes()).context("signing a DPoP proof")?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// Seconds since the Unix epoch (a proof's `iat`).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use authplane::domain::Timestamp;
    use authplane::service::dpop::{DpopVerifier, ProofFor};

    /// The proofs the load tool sends are ones the server's verifier accepts (and spends).
    #[test]
    fn the_servers_verifier_accepts_the_proofs() {
        let url = url::Url::parse("http://127.0.0.1:8080/auth/userinfo").unwrap();
        let verifier = DpopVerifier::new(std::time::Duration::from_secs(60), 1_000);
        let now = unix_now();
        for alg in Alg::ALL {
            let key = ProofKey::generate(alg).unwrap();
            let proof = key.proof("GET", url.as_str(), Some("tok"), now).unwrap();
            let req = ProofFor {
                method: "GET",
                url: &url,
                access_token: Some("tok"),
            };
            let at = Timestamp::from_millis(now * 1000);
            assert!(verifier.verify(&proof, &req, at).is_ok(), "{alg}");
            assert!(verifier.verify(&proof, &req, at).is_err(), "{alg}: a replay");
        }
    }
}
