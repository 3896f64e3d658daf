//! ID tokens (OpenID Connect Core 2 and 3.1.3.6), from the code grant and the refresh grant of a
//! grant whose scope holds `openid`.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::service::KeyService;
use crate::service::{Client, TokenService};

/// The claims of an ID token. The profile and email claims stay at UserInfo: the ID token is
/// sent on every refresh and kept by the relying party, so it carries what identifies the
/// authentication, not the profile.
#[derive(Debug, Serialize)]
pub struct IdTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub azp: &'a str,
    pub exp: i64,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub at_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<&'a str>,
}

/// What the grant knows of the authentication an ID token describes.
pub struct Authentication<'a> {
    pub sub: &'a Arc<str>,
    pub auth_time: Option<Timestamp>,
    pub nonce: Option<&'a str>,
    pub sid: Option<&'a str>,
}

impl TokenService {
    /// Signs the ID token that goes with `access_token`, with the client's
    /// `id_token_signed_response_alg`.
    pub(crate) async fn id_token(
        &self,
        client: &Client,
        auth: Authentication<'_>,
        access_token: &str,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        let inner = &self.inner;
        let alg = client.id_token_alg;
        let claims = IdTokenClaims {
            iss: &inner.issuer,
            sub: auth.sub,
            aud: &client.client_id,
            azp: &client.client_id,
            exp: now.plus(inner.id_token_ttl).secs(),
            iat: now.secs(),
            auth_time: auth.auth_time.map(Timestamp::secs),
            nonce: auth.nonce,
            at_hash: alg.at_hash(access_token),
            sid: auth.sid,
        };
        let signed = inner.keys.sign(alg, "JWT", &claims).await.map_err(ApiError::internal)?;
        Ok(signed.token)
    }
}

/// What an `id_token_hint` (authorize, end-session) says, once it is known to be ours: signed by a
/// key still in our JWKS with that key's own `alg`, and issued by `issuer`. Expiry is not checked
/// (OpenID Connect Core 3.1.2.1 and RP-Initiated Logout accept expired hints).
pub(crate) struct Hint {
    pub sub: Option<String>,
    pub aud: Vec<String>,
}

/// `None` when the hint is not an ID token of ours (the reason goes to the security log).
pub(crate) fn verify_hint(keys: &KeyService, issuer: &str, hint: &str) -> Option<Hint> {
    let verified = match keys.verify(hint) {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(target: "security", reason = %e, "id_token_hint refused");
            return None;
        }
    };
    // An access token (`at+jwt`) is signed by the same keys and is not an ID token.
    if verified.typ.as_deref().is_some_and(|t| t != "JWT") {
        tracing::info!(target: "security", "id_token_hint that is not an ID token refused");
        return None;
    }
    let c = &verified.claims;
    if c.get("iss").and_then(|v| v.as_str()) != Some(issuer) {
        tracing::info!(target: "security", "id_token_hint of another issuer refused");
        return None;
    }
    let aud = match c.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(all)) => all.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    Some(Hint {
        sub: c.get("sub").and_then(|v| v.as_str()).map(str::to_owned),
        aud,
    })
}
