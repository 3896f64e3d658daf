//! Logging out: `POST /auth/logout` with the session cookie, and RP-initiated logout
//! (`/auth/end-session`, OpenID Connect RP-Initiated Logout 1.0). Either way the session ends and
//! every grant made under it is revoked, except `offline_access` grants, which are meant to
//! outlive the session: at once on this node, and within the invalidation window on the others
//! (each revoked grant is announced like any revocation).

use std::sync::Arc;

use crate::crypto;
use crate::domain::{Client, Timestamp};
use crate::error::ApiError;
use crate::service::{ClientRegistry, KeyService, SessionService, TokenService, id_token};

/// The parameters of `/auth/end-session`, as they arrived (empty values count as absent).
#[derive(Debug, Default)]
pub struct EndSessionRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// What `/auth/end-session` checked, before anything is done.
pub struct EndSession {
    /// The hint was an ID token of ours: the relying party asked, no confirmation needed.
    pub confirmed_by_hint: bool,
    /// Where to send the browser afterwards (a registered `post_logout_redirect_uri`, with
    /// `state`), when the request named one.
    pub redirect: Option<String>,
    /// The client's name, for the confirmation page.
    pub client_name: Option<String>,
}

#[derive(Clone)]
pub struct LogoutService {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: SessionService,
    tokens: TokenService,
    keys: KeyService,
    clients: ClientRegistry,
    issuer: String,
}

impl LogoutService {
    pub fn new(
        sessions: SessionService,
        tokens: TokenService,
        keys: KeyService,
        clients: ClientRegistry,
        issuer: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions,
                tokens,
                keys,
                clients,
                issuer,
            }),
        }
    }

    /// Ends the session of `cookie` (if it is one) and revokes its grants, `offline_access`
    /// ones excepted. Returns how many grants it revoked.
    pub async fn logout(&self, cookie: Option<&str>, now: Timestamp) -> Result<usize, ApiError> {
        let Some(cookie) = cookie else { return Ok(0) };
        let inner = &self.inner;
        let hash = crypto::hash_token(cookie);
        inner.sessions.logout(cookie).await?;
        let sid = crypto::session_id(&hash);
        let revoked = inner.tokens.revoke_session_grants(&sid, now).await?;
        tracing::info!(target: "security", revoked, "session ended");
        Ok(revoked)
    }

    /// Checks an end-session request: the hint (an ID token of ours for the client; expired
    /// ones are accepted), the client (from the hint or `client_id`; they must agree), and the
    /// `post_logout_redirect_uri` (exactly one of the client's). Anything wrong is an error shown
    /// to the user, never a redirect.
    pub async fn check(&self, req: &EndSessionRequest) -> Result<EndSession, ApiError> {
        let inner = &self.inner;
        let hinted = match &req.id_token_hint {
            Some(hint) => Some(self.hint_client(hint)?),
            None => None,
        };
        let client_id = match (hinted.as_deref(), req.client_id.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::InvalidRequest(
                    "client_id is not the id_token_hint's audience",
                ));
            }
            (Some(a), _) => Some(a.to_owned()),
            (None, b) => b.map(str::to_owned),
        };
        let client: Option<Arc<Client>> = match &client_id {
            Some(id) => Some(
                inner
                    .clients
                    .get(id)
                    .await?
                    .ok_or(ApiError::InvalidRequest("unknown client_id"))?,
            ),
            None => None,
        };
        let redirect = match (&req.post_logout_redirect_uri, &client) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ApiError::InvalidRequest(
                    "post_logout_redirect_uri needs the client: send id_token_hint or client_id",
                ));
            }
            (Some(uri), Some(client)) => {
                let registered = client
                    .post_logout_redirect_uris
                    .iter()
                    .find(|r| r.exact == *uri)
                    .ok_or(ApiError::InvalidRequest(
                        "post_logout_redirect_uri is not registered for this client",
                    ))?;
                let mut url = url::Url::parse(&registered.base).map_err(ApiError::internal)?;
                if let Some(state) = &req.state {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Some(String::from(url))
            }
        };
        Ok(EndSession {
            confirmed_by_hint: hinted.is_some(),
            redirect,
            client_name: client.map(|c| c.client_name.clone().unwrap_or_else(|| c.client_id.to_string())),
        })
    }

    /// The client an ID token hint was issued to, when it is one of ours.
    fn hint_client(&self, hint: &str) -> Result<String, ApiError> {
        let refused = ApiError::InvalidRequest("id_token_hint is not an ID token this server issued");
        match id_token::verify_hint(&self.inner.keys, &self.inner.issuer, hint) {
            Some(id_token::Hint { aud, .. }) if aud.len() == 1 => Ok(aud.into_iter().next().unwrap_or_default()),
            _ => Err(refused),
        }
    }
}
