//! The authorization endpoint (RFC 6749 section 4.1.1, RFC 7636, RFC 9207). The client and the
//! redirect_uri are checked first: until both are known good, errors are answered directly and
//! never by redirect (RFC 6749 section 4.1.2.1), so authplane cannot be used as an open redirector.

use std::sync::Arc;

use crate::crypto;
use crate::domain::{CodeChallenge, Scope, Timestamp};
use crate::error::ApiError;
use crate::service::{Client, ClientRegistry, SessionService, Ttls, UserDirectory};
use crate::store::{CodeRecord, Store};

/// The authorize parameters as they arrived (empty values already count as absent).
#[derive(Debug, Default)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub nonce: Option<String>,
    /// Names of parameters that appeared more than once.
    pub duplicated: Vec<String>,
}

pub enum AuthorizeOutcome {
    /// 302 to the client: a code, or an error the client may see.
    Redirect(String),
    /// No session: send the browser to the login page, which comes back here.
    Login,
}

#[derive(Clone)]
pub struct AuthorizeService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    clients: ClientRegistry,
    sessions: SessionService,
    users: Arc<UserDirectory>,
    issuer: String,
    ttls: Ttls,
}

/// An error that goes back to the client by redirect.
struct RedirectError {
    error: &'static str,
    description: &'static str,
}

fn redirect_error(e: ApiError) -> RedirectError {
    RedirectError {
        error: e.code(),
        description: e.description().unwrap_or(""),
    }
}

impl AuthorizeService {
    pub fn new(
        store: Arc<dyn Store>,
        clients: ClientRegistry,
        sessions: SessionService,
        users: Arc<UserDirectory>,
        issuer: String,
        ttls: Ttls,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clients,
                sessions,
                users,
                issuer,
                ttls,
            }),
        }
    }

    pub async fn authorize(
        &self,
        req: AuthorizeRequest,
        session_cookie: Option<&str>,
        now: Timestamp,
    ) -> Result<AuthorizeOutcome, ApiError> {
        let inner = &self.inner;
        if req.duplicated.iter().any(|p| p == "client_id" || p == "redirect_uri") {
            return Err(ApiError::InvalidRequest(
                "client_id or redirect_uri given more than once",
            ));
        }
        let client_id = req
            .client_id
            .as_deref()
            .ok_or(ApiError::InvalidRequest("client_id is required"))?;
        let client = inner
            .clients
            .get(client_id)
            .ok_or(ApiError::InvalidRequest("unknown client_id"))?;
        let registered = match (&req.redirect_uri, client.redirect_uris.as_slice()) {
            (Some(uri), all) => all.iter().find(|r| r.exact == *uri).ok_or_else(|| {
                tracing::info!(target: "security", client_id, "authorize with an unregistered redirect_uri");
                ApiError::InvalidRequest("redirect_uri is not registered for this client")
            })?,
            (None, [only]) => only,
            (None, _) => return Err(ApiError::InvalidRequest("redirect_uri is required")),
        };
        let (redirect_uri, base) = (&registered.exact, &registered.base);
        // From here on, errors go back to the client.
        let checked = match self.check(client, &req) {
            Ok(c) => c,
            Err(e) => {
                return Ok(AuthorizeOutcome::Redirect(self.error_redirect(base, &req.state, e)));
            }
        };
        let session = match session_cookie {
            Some(cookie) => inner.sessions.resolve(cookie, now).await?,
            None => None,
        };
        let session = session.filter(|s| inner.users.by_sub(&s.sub).is_some());
        let Some(session) = session else {
            if req.prompt.as_deref() == Some("none") {
                let e = redirect_error(ApiError::LoginRequired);
                return Ok(AuthorizeOutcome::Redirect(self.error_redirect(base, &req.state, e)));
            }
            return Ok(AuthorizeOutcome::Login);
        };
        let code = crypto::generate_token();
        let record = CodeRecord {
            hash: code.hash,
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            redirect_uri_given: req.redirect_uri.is_some(),
            sub: session.sub.clone(),
            scope: checked.scope,
            challenge: checked.challenge,
            grant_id: crypto::generate_grant_id(),
            auth_time: session.auth_time,
            expires_at: now.plus(inner.ttls.code),
            consumed: false,
            nonce: checked.nonce,
            sid: Some(Arc::from(crypto::session_id(&session.hash))),
        };
        inner.store.insert_code(&record).await?;
        let state = req.state.as_deref().map(|s| ("state", s));
        let pairs = [Some(("code", code.value.as_str())), state, Some(("iss", &inner.issuer))];
        Ok(AuthorizeOutcome::Redirect(with_query(
            base,
            pairs.into_iter().flatten(),
        )))
    }

    /// The checks whose failures the client is told about by redirect.
    fn check(&self, client: &Client, req: &AuthorizeRequest) -> Result<Checked, RedirectError> {
        if !req.duplicated.is_empty() {
            return Err(redirect_error(ApiError::InvalidRequest(
                "a parameter was given more than once",
            )));
        }
        match req.response_type.as_deref() {
            Some("code") => {}
            Some(_) => return Err(redirect_error(ApiError::UnsupportedResponseType)),
            None => {
                return Err(redirect_error(ApiError::InvalidRequest("response_type is required")));
            }
        }
        if !client.allows(crate::domain::GrantType::AuthorizationCode) {
            return Err(redirect_error(ApiError::UnauthorizedClient));
        }
        let scope = match &req.scope {
            Some(s) => Scope::parse(s).ok_or_else(|| redirect_error(ApiError::InvalidScope))?,
            None => client.scope.clone(),
        };
        if scope.is_empty() || !scope.is_subset(&client.scope) {
            return Err(redirect_error(ApiError::InvalidScope));
        }
        let challenge = match (&req.code_challenge, req.code_challenge_method.as_deref()) {
            (None, None) if client.pkce_required() => {
                return Err(redirect_error(ApiError::InvalidRequest(
                    "code_challenge is required (PKCE S256)",
                )));
            }
            (None, None) => None,
            (None, Some(_)) => {
                return Err(redirect_error(ApiError::InvalidRequest(
                    "code_challenge_method without code_challenge",
                )));
            }
            (Some(_), None | Some("plain")) => {
                return Err(redirect_error(ApiError::InvalidRequest(
                    "code_challenge_method must be S256",
                )));
            }
            (Some(c), Some("S256")) => Some(
                CodeChallenge::parse(c)
                    .ok_or_else(|| redirect_error(ApiError::InvalidRequest("code_challenge is malformed")))?,
            ),
            (Some(_), Some(_)) => {
                return Err(redirect_error(ApiError::InvalidRequest(
                    "code_challenge_method must be S256",
                )));
            }
        };
        let nonce = match &req.nonce {
            Some(n) if n.len() > MAX_NONCE_LEN => {
                return Err(redirect_error(ApiError::InvalidRequest("nonce is too long")));
            }
            n => n.clone(),
        };
        Ok(Checked {
            scope,
            challenge,
            nonce,
        })
    }

    fn error_redirect(&self, base: &str, state: &Option<String>, e: RedirectError) -> String {
        let description = (!e.description.is_empty()).then_some(("error_description", e.description));
        let state = state.as_deref().map(|s| ("state", s));
        let pairs = [
            Some(("error", e.error)),
            description,
            state,
            Some(("iss", &self.inner.issuer)),
        ];
        with_query(base, pairs.into_iter().flatten())
    }
}

struct Checked {
    scope: Scope,
    challenge: Option<CodeChallenge>,
    nonce: Option<String>,
}

/// A nonce is the relying party's random value (or a hash of one): 512 characters is generous,
/// and bounds what a request can make the code record (and the ID token) hold.
const MAX_NONCE_LEN: usize = 512;

/// `base` (a registered redirect URI as the URL parser writes it; validated at start-up: absolute,
/// no fragment) with `pairs` appended to its query, form-encoded: what `Url::query_pairs_mut` does,
/// without parsing the URI (host, IDNA) again for every answer.
fn with_query<'a>(base: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::with_capacity(base.len() + 160);
    out.push_str(base);
    let start = match base.find('?') {
        Some(q) => q + 1,
        None => {
            out.push('?');
            out.len()
        }
    };
    let mut query = url::form_urlencoded::Serializer::for_suffix(out, start);
    query.extend_pairs(pairs);
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::with_query;

    /// `with_query` answers exactly what the URL parser's own query building does.
    #[test]
    fn with_query_matches_the_url_parser() {
        let pairs = [
            ("code", "a-b_c"),
            ("state", "x y&z=é/?#"),
            ("iss", "http://127.0.0.1:8080"),
        ];
        for registered in [
            "http://127.0.0.1:9000/callback",
            "https://App.Example/cb?tenant=1",
            "https://app.example/cb?",
            "https://app.example",
            "com.example.app:/oauth2redirect",
        ] {
            let mut expected = url::Url::parse(registered).unwrap();
            expected.query_pairs_mut().extend_pairs(pairs);
            let base = String::from(url::Url::parse(registered).unwrap());
            assert_eq!(with_query(&base, pairs), String::from(expected), "{registered}");
        }
    }
}
