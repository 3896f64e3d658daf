//! ID tokens (OpenID Connect Core 2 and 3.1.3.6), from the code grant and the refresh grant of a
//! grant whose scope holds `openid`.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::Timestamp;
use crate::error::ApiError;
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
