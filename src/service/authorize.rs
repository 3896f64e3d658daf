//! The authorization endpoint (RFC 6749 section 4.1.1, RFC 7636, RFC 9207). The client and the
//! redirect_uri are checked first: until both are known good, errors are answered directly and
//! never by redirect (RFC 6749 section 4.1.2.1), so authplane cannot be used as an open redirector.

use std::sync::Arc;

use crate::crypto;
use crate::domain::{CodeChallenge, RegisteredUri, Resources, Scope, Timestamp};
use crate::error::ApiError;
use crate::jose::FormKey;
use crate::service::dpop::{DpopVerifier, ProofFor};
use crate::service::{Client, ClientRegistry, KeyService, SessionService, Ttls, UserDirectory};
use crate::service::{dpop, id_token};
use crate::store::{CodeRecord, PushedRequestRecord, Store};

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
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    pub response_mode: Option<String>,
    /// `resource` (RFC 8707), which may repeat.
    pub resources: Vec<String>,
    /// `dpop_jkt` (RFC 9449 section 10).
    pub dpop_jkt: Option<String>,
    /// Names of parameters that appeared more than once.
    pub duplicated: Vec<String>,
}

impl AuthorizeRequest {
    /// The parameters of a query string this server wrote or was sent (a consent page's
    /// `return_to`, a pushed request); a parameter given twice is recorded as duplicated,
    /// `resource` excepted (it may repeat).
    pub fn from_query(query: &str) -> Self {
        let mut req = AuthorizeRequest::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k == "resource" {
                if !v.is_empty() {
                    req.resources.push(v.into_owned());
                }
                continue;
            }
            if !seen.insert(k.to_string()) {
                req.duplicated.push(k.to_string());
                continue;
            }
            if v.is_empty() {
                continue;
            }
            let v = Some(v.into_owned());
            match &*k {
                "response_type" => req.response_type = v,
                "client_id" => req.client_id = v,
                "redirect_uri" => req.redirect_uri = v,
                "scope" => req.scope = v,
                "state" => req.state = v,
                "code_challenge" => req.code_challenge = v,
                "code_challenge_method" => req.code_challenge_method = v,
                "prompt" => req.prompt = v,
                "nonce" => req.nonce = v,
                "max_age" => req.max_age = v,
                "login_hint" => req.login_hint = v,
                "id_token_hint" => req.id_token_hint = v,
                "request" => req.request = v,
                "request_uri" => req.request_uri = v,
                "response_mode" => req.response_mode = v,
                "dpop_jkt" => req.dpop_jkt = v,
                _ => {}
            }
        }
        req
    }

    /// The parameters as a query string ([`AuthorizeRequest::from_query`] reads it back).
    pub fn to_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let one = [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("prompt", &self.prompt),
            ("nonce", &self.nonce),
            ("max_age", &self.max_age),
            ("login_hint", &self.login_hint),
            ("id_token_hint", &self.id_token_hint),
            ("request", &self.request),
            ("request_uri", &self.request_uri),
            ("response_mode", &self.response_mode),
            ("dpop_jkt", &self.dpop_jkt),
        ];
        for (name, value) in one {
            if let Some(v) = value {
                q.append_pair(name, v);
            }
        }
        for r in &self.resources {
            q.append_pair("resource", r);
        }
        q.finish()
    }
}

pub enum AuthorizeOutcome {
    /// 302 to the client: a code, or an error the client may see.
    Redirect(String),
    /// The user must log in: send the browser to the login page, which comes back here.
    Login {
        /// Pre-fills the username (`login_hint`).
        login_hint: Option<String>,
        /// The login is forced (`prompt=login`, `max_age=0`): the way back must not ask again,
        /// so it leaves out `max_age`, and of `prompt` keeps only `kept_prompt`. (A relying
        /// party that needs proof of a fresh login checks the ID token's `auth_time`, as OpenID
        /// Connect Core 3.1.2.1 asks.)
        forced: bool,
        /// What the way back keeps of `prompt`: all of it, or after a forced login what is
        /// left to do (`consent` of `prompt=login consent`); `None` for nothing.
        kept_prompt: Option<String>,
    },
    /// A third-party client needs the user's consent: send the browser to the consent page,
    /// which comes back here.
    Consent,
}

#[derive(Clone)]
pub struct AuthorizeService {
    pub(crate) inner: Arc<Inner>,
}

/// The parts, and what is derived from them once.
pub(crate) struct Inner {
    parts: AuthorizeServiceParts,
    /// `iss=<issuer>` (RFC 9207), form-encoded once: the end of every redirect to a client.
    iss_pair: String,
}

impl std::ops::Deref for Inner {
    type Target = AuthorizeServiceParts;

    fn deref(&self) -> &AuthorizeServiceParts {
        &self.parts
    }
}

/// An authorize request's client and the index of its registered redirect URI.
pub(crate) struct RedirectTarget {
    pub client: Arc<Client>,
    uri: usize,
}

impl RedirectTarget {
    pub fn registered(&self) -> &RegisteredUri {
        &self.client.redirect_uris[self.uri]
    }
}

/// An error that goes back to the client by redirect (or, for a pushed request, in the answer).
pub(crate) struct RedirectError(ApiError);

pub(crate) fn redirect_error(e: ApiError) -> RedirectError {
    RedirectError(e)
}

/// The prefix of the `request_uri`s `/auth/par` hands out (RFC 9126 section 2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The answer to a pushed authorization request (RFC 9126 section 2.2).
#[derive(Debug, serde::Serialize)]
pub struct Pushed {
    pub request_uri: String,
    pub expires_in: u64,
}

/// What the authorization service is built from.
pub struct AuthorizeServiceParts {
    pub store: Arc<dyn Store>,
    pub keys: KeyService,
    /// Tags the consent form.
    pub forms: FormKey,
    pub clients: ClientRegistry,
    pub sessions: SessionService,
    pub users: Arc<UserDirectory>,
    pub issuer: String,
    pub ttls: Ttls,
    /// Checks a DPoP proof sent to `/auth/par`, which binds the code (RFC 9449 section 10.1).
    pub dpop: DpopVerifier,
    /// `<issuer>/auth/par`, which such a proof names.
    pub par_url: url::Url,
}

impl AuthorizeService {
    pub fn new(parts: AuthorizeServiceParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                iss_pair: iss_pair(&parts.issuer),
                parts,
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
        let (mut req, pushed) = self.resolve_pushed(req, now).await?;
        let target = self.redirect_target(&req).await?;
        let (client, registered) = (&target.client, target.registered());
        let (redirect_uri, base) = (&registered.exact, &registered.base);
        // From here on, errors go back to the client.
        if pushed.is_none() && client.require_pushed_authorization_requests {
            let e = redirect_error(ApiError::InvalidRequest(
                "this client must push its authorization requests to /auth/par",
            ));
            return Ok(AuthorizeOutcome::Redirect(self.error_redirect(base, &req.state, e)));
        }
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
        // OpenID Connect Core 3.1.2.3: a new login when there is no session, when asked for one,
        // when the session's login is older than max_age, or when the session is another user's
        // than the ID token hint's.
        let forced = checked.prompt.login || checked.max_age == Some(0);
        let session = session.filter(|s| {
            let too_old = checked
                .max_age
                .is_some_and(|max| now.secs().saturating_sub(s.auth_time.secs()) > max);
            let other_user = checked.hint_sub.as_deref().is_some_and(|sub| sub != &*s.sub);
            !forced && !too_old && !other_user
        });
        let Some(session) = session else {
            if checked.prompt.none {
                let e = redirect_error(ApiError::LoginRequired);
                return Ok(AuthorizeOutcome::Redirect(self.error_redirect(base, &req.state, e)));
            }
            // The way back must not force the login again; the rest of `prompt` stays
            // (`prompt=login consent` still asks for consent after the login).
            let kept_prompt = match forced {
                true => prompt_without(req.prompt.as_deref(), "login"),
                false => req.prompt.clone(),
            };
            if let Some(pushed) = &pushed {
                // A pushed request's prompt is in the store, not in the URL the login page
                // returns to.
                if forced {
                    req.prompt = kept_prompt.clone();
                    req.max_age = None;
                }
                self.resume_pushed(pushed, &req, now).await?;
            }
            return Ok(AuthorizeOutcome::Login {
                login_hint: req.login_hint.clone(),
                forced,
                kept_prompt,
            });
        };
        // Third-party clients need the user's consent to the scopes they ask for (remembered
        // per user and client); `prompt=consent` asks again.
        if !client.first_party {
            let consent = inner.store.get_consent(&session.sub, &client.client_id).await?;
            let covered = consent.is_some_and(|c| checked.scope.is_subset(&c.scope));
            if checked.prompt.consent || !covered {
                if checked.prompt.none {
                    let e = redirect_error(ApiError::ConsentRequired);
                    return Ok(AuthorizeOutcome::Redirect(self.error_redirect(base, &req.state, e)));
                }
                if let Some(pushed) = &pushed {
                    req.prompt = prompt_without(req.prompt.as_deref(), "consent");
                    self.resume_pushed(pushed, &req, now).await?;
                }
                return Ok(AuthorizeOutcome::Consent);
            }
        }
        // A pushed request authorizes once (RFC 9126 section 4): of two uses racing on any
        // nodes, one gets the code.
        if let Some(pushed) = &pushed {
            if !inner.store.consume_pushed_request(&pushed.hash).await? {
                tracing::info!(target: "security", client_id = %client.client_id, "pushed request used twice");
                return Err(ApiError::InvalidRequestUri);
            }
        }
        let (code, grant_id) = crypto::generate_code();
        let record = CodeRecord {
            hash: code.hash,
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            redirect_uri_given: req.redirect_uri.is_some(),
            sub: session.sub.clone(),
            scope: checked.scope,
            challenge: checked.challenge,
            grant_id,
            auth_time: session.auth_time,
            expires_at: now.plus(inner.ttls.code),
            consumed: false,
            nonce: checked.nonce,
            sid: Some(Arc::from(crypto::session_id(&session.hash))),
            resources: checked.resources,
            dpop_jkt: checked.dpop_jkt,
        };
        inner.store.insert_code(&record).await?;
        let state = req.state.as_deref().map(|s| ("state", s));
        let pairs = [Some(("code", code.value.as_str())), state];
        Ok(AuthorizeOutcome::Redirect(with_query(
            base,
            pairs.into_iter().flatten(),
            &inner.iss_pair,
        )))
    }

    /// An authorize request that names a pushed one (`request_uri` from `/auth/par`, with its
    /// `client_id`): the pushed parameters, and the record to consume once the authorization is
    /// done. Every other parameter of the request is ignored (RFC 9126 section 4). Any other
    /// `request_uri` is left for [`AuthorizeService::check`] to refuse.
    pub(crate) async fn resolve_pushed(
        &self,
        req: AuthorizeRequest,
        now: Timestamp,
    ) -> Result<(AuthorizeRequest, Option<PushedRequestRecord>), ApiError> {
        let Some(uri) = req.request_uri.as_deref().filter(|u| u.starts_with(REQUEST_URI_PREFIX)) else {
            return Ok((req, None));
        };
        let client_id = req
            .client_id
            .as_deref()
            .ok_or(ApiError::InvalidRequest("client_id is required"))?;
        let hash = crypto::hash_token(uri);
        let refuse = |why: &'static str| {
            tracing::info!(target: "security", client_id, reason = why, "pushed request refused");
            Err(ApiError::InvalidRequestUri)
        };
        let pushed = match self.inner.store.get_pushed_request(&hash).await? {
            None => return refuse("unknown request_uri"),
            Some(p) if *p.client_id != *client_id => return refuse("request_uri of another client"),
            Some(p) if p.expires_at <= now => return refuse("request_uri expired"),
            Some(p) if p.consumed => return refuse("request_uri already used"),
            Some(p) => p,
        };
        Ok((AuthorizeRequest::from_query(&pushed.params), Some(pushed)))
    }

    /// A pushed request that sends the browser to the login or consent page: it keeps `req`'s
    /// parameters (the `prompt` the page satisfies taken out, as the way back of a request by
    /// URL leaves it out), and lives on for [`INTERACTION_TTL`] from now (or `--par-ttl`, when
    /// longer), so that a user who takes a few minutes on the page still comes back to it; a
    /// `request_uri` otherwise lives only the short while a client needs to send the browser
    /// on (RFC 9126 section 2.2). It stays single-use and bound to its client.
    async fn resume_pushed(
        &self,
        pushed: &PushedRequestRecord,
        req: &AuthorizeRequest,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let lifetime = INTERACTION_TTL.max(self.inner.ttls.pushed_request);
        let record = PushedRequestRecord {
            params: req.to_query(),
            expires_at: pushed.expires_at.max(now.plus(lifetime)),
            ..pushed.clone()
        };
        if !self.inner.store.resume_pushed_request(&record).await? {
            tracing::info!(target: "security", client_id = %pushed.client_id, "pushed request used twice");
            return Err(ApiError::InvalidRequestUri);
        }
        Ok(())
    }

    /// `POST /auth/par` (RFC 9126) after client authentication: checks the request as authorize
    /// would (errors in the answer, never by redirect) and keeps it for `--par-ttl`. A DPoP proof
    /// at the push binds the code to its key like `dpop_jkt` (RFC 9449 section 10.1).
    pub async fn push(
        &self,
        client: &Client,
        mut req: AuthorizeRequest,
        proof: Option<&str>,
        now: Timestamp,
    ) -> Result<Pushed, ApiError> {
        let inner = &self.inner;
        let proof_jkt = match proof {
            Some(p) => Some(
                inner
                    .dpop
                    .check(&client.client_id, p, &ProofFor::post_to(&inner.par_url), now)?
                    .jkt,
            ),
            None => None,
        };
        if req.request_uri.is_some() {
            return Err(ApiError::InvalidRequest("request_uri cannot be pushed"));
        }
        if req.client_id.as_deref().is_some_and(|id| id != &*client.client_id) {
            return Err(ApiError::InvalidRequest("client_id is not the authenticated client"));
        }
        req.client_id = Some(client.client_id.to_string());
        if let Some(jkt) = proof_jkt {
            if req.dpop_jkt.as_deref().is_some_and(|j| j != jkt) {
                return Err(ApiError::InvalidDpopProof { at_resource: false });
            }
            req.dpop_jkt = Some(jkt);
        }
        // What a client can make the server hold is bounded (invariant 12): a pushed request
        // is kept as its parameters, form-encoded.
        let params = req.to_query();
        if params.len() > MAX_PUSHED_BYTES {
            tracing::info!(target: "security", client_id = %client.client_id, bytes = params.len(), "pushed request too large");
            return Err(ApiError::InvalidRequest("the pushed parameters exceed 8 KiB"));
        }
        let target = self.redirect_target(&req).await?;
        self.check(&target.client, &req).map_err(|e| e.0)?;
        let uri = format!("{REQUEST_URI_PREFIX}{}", crypto::generate_token().value);
        let record = PushedRequestRecord {
            hash: crypto::hash_token(&uri),
            client_id: Arc::clone(&client.client_id),
            params,
            expires_at: now.plus(inner.ttls.pushed_request),
            consumed: false,
        };
        inner.store.insert_pushed_request(&record).await?;
        Ok(Pushed {
            request_uri: uri,
            expires_in: now.secs_until(record.expires_at),
        })
    }

    /// The client and the registered redirect URI of a request: until both are known good,
    /// errors are answered directly, never by redirect.
    pub(crate) async fn redirect_target(&self, req: &AuthorizeRequest) -> Result<RedirectTarget, ApiError> {
        if req.duplicated.iter().any(|p| p == "client_id" || p == "redirect_uri") {
            return Err(ApiError::InvalidRequest(
                "client_id or redirect_uri given more than once",
            ));
        }
        let client_id = req
            .client_id
            .as_deref()
            .ok_or(ApiError::InvalidRequest("client_id is required"))?;
        let client = self
            .inner
            .clients
            .get(client_id)
            .await?
            .ok_or(ApiError::InvalidRequest("unknown client_id"))?;
        let uri = match (&req.redirect_uri, client.redirect_uris.as_slice()) {
            (Some(uri), all) => all.iter().position(|r| r.exact == *uri).ok_or_else(|| {
                tracing::info!(target: "security", client_id, "authorize with an unregistered redirect_uri");
                ApiError::InvalidRequest("redirect_uri is not registered for this client")
            })?,
            (None, [_]) => 0,
            (None, _) => return Err(ApiError::InvalidRequest("redirect_uri is required")),
        };
        Ok(RedirectTarget { client, uri })
    }

    /// The checks whose failures the client is told about by redirect.
    pub(crate) fn check(&self, client: &Client, req: &AuthorizeRequest) -> Result<Checked, RedirectError> {
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
        let resources = allowed_resources(&req.resources, &client.resources).map_err(redirect_error)?;
        let dpop_jkt = match &req.dpop_jkt {
            Some(j) => Some(
                dpop::parse_jkt(j)
                    .ok_or_else(|| redirect_error(ApiError::InvalidRequest("dpop_jkt is not a JWK thumbprint")))?,
            ),
            None => None,
        };
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
        if req.request.is_some() {
            return Err(redirect_error(ApiError::RequestNotSupported));
        }
        if req.request_uri.is_some() {
            return Err(redirect_error(ApiError::RequestUriNotSupported));
        }
        if req.response_mode.as_deref().is_some_and(|m| m != "query") {
            return Err(redirect_error(ApiError::InvalidRequest("response_mode must be query")));
        }
        let prompt = Prompt::parse(req.prompt.as_deref()).map_err(redirect_error)?;
        let max_age = match &req.max_age {
            Some(m) => Some(
                m.parse::<i64>()
                    .ok()
                    .filter(|m| *m >= 0)
                    .ok_or_else(|| redirect_error(ApiError::InvalidRequest("max_age must be a number of seconds")))?,
            ),
            None => None,
        };
        if req.login_hint.as_ref().is_some_and(|h| h.len() > MAX_HINT_LEN) {
            return Err(redirect_error(ApiError::InvalidRequest("login_hint is too long")));
        }
        let hint_sub = match &req.id_token_hint {
            Some(hint) => Some(self.hint_subject(hint, client).map_err(redirect_error)?),
            None => None,
        };
        let nonce = match &req.nonce {
            Some(n) if n.len() > MAX_NONCE_LEN => {
                return Err(redirect_error(ApiError::InvalidRequest("nonce is too long")));
            }
            n => n.clone(),
        };
        Ok(Checked {
            scope,
            resources,
            dpop_jkt,
            challenge,
            nonce,
            prompt,
            max_age,
            hint_sub,
        })
    }

    /// The subject of an `id_token_hint`: an ID token this server signed (with a key still in
    /// its JWKS) for this client; expired ones are accepted (OpenID Connect Core 3.1.2.1).
    fn hint_subject(&self, hint: &str, client: &Client) -> Result<String, ApiError> {
        let not_ours =
            || ApiError::InvalidRequest("id_token_hint is not an ID token this server issued to this client");
        let hint = id_token::verify_hint(&self.inner.keys, &self.inner.issuer, hint).ok_or_else(not_ours)?;
        if !hint.aud.iter().any(|a| *a == *client.client_id) {
            tracing::info!(target: "security", client_id = %client.client_id, "id_token_hint of another client refused");
            return Err(not_ours());
        }
        hint.sub.ok_or_else(not_ours)
    }

    pub(crate) fn error_redirect(&self, base: &str, state: &Option<String>, e: RedirectError) -> String {
        let description = e.0.description().map(|d| ("error_description", d));
        let state = state.as_deref().map(|s| ("state", s));
        let pairs = [Some(("error", e.0.code())), description, state];
        with_query(base, pairs.into_iter().flatten(), &self.inner.iss_pair)
    }
}

pub(crate) struct Checked {
    pub(crate) scope: Scope,
    resources: Resources,
    dpop_jkt: Option<String>,
    challenge: Option<CodeChallenge>,
    nonce: Option<String>,
    prompt: Prompt,
    /// `max_age` in seconds.
    max_age: Option<i64>,
    /// The `sub` of the `id_token_hint`.
    hint_sub: Option<String>,
}

/// The `resource`s of a request (RFC 8707), each well formed and among `allowed` (the client's,
/// or at the token endpoint the grant's), else `invalid_target`.
pub(crate) fn allowed_resources(requested: &[String], allowed: &Resources) -> Result<Resources, ApiError> {
    let resources = Resources::parse(requested).ok_or(ApiError::InvalidTarget)?;
    if !resources.is_subset(allowed) {
        return Err(ApiError::InvalidTarget);
    }
    Ok(resources)
}

/// `prompt` (OpenID Connect Core 3.1.2.1): space-separated values.
#[derive(Clone, Copy, Debug, Default)]
struct Prompt {
    none: bool,
    login: bool,
    consent: bool,
}

impl Prompt {
    fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        let mut p = Self::default();
        for value in s.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                // select_account: one account per browser here; nothing to select.
                "select_account" => {}
                _ => return Err(ApiError::InvalidRequest("prompt has an unknown value")),
            }
        }
        if p.none && (p.login || p.consent) {
            return Err(ApiError::InvalidRequest(
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok(p)
    }
}

/// `prompt` without `value`: what is left to do once its page is under way. `None` when nothing
/// is left.
fn prompt_without(prompt: Option<&str>, value: &str) -> Option<String> {
    let kept: Vec<&str> = prompt?.split(' ').filter(|v| !v.is_empty() && *v != value).collect();
    (!kept.is_empty()).then(|| kept.join(" "))
}

/// How long a pushed request lives on once it has sent the browser to the login or consent page
/// (at least `--par-ttl`): long enough for a user to log in and decide, as the interaction
/// lifetimes of Keycloak (login timeout) and oidc-provider (interaction TTL) are.
pub const INTERACTION_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Bound on a pushed request's parameters, form-encoded as they are stored (`state`, `nonce` and
/// the rest together): a stored record stays small, and its `state` comes back in a redirect no
/// longer than one an authorize request by URL (under `--max-header-bytes`) produces.
pub const MAX_PUSHED_BYTES: usize = 8 * 1024;

/// Bound on `login_hint` (a username or an email): it is echoed into the login page.
const MAX_HINT_LEN: usize = 256;

/// A nonce is the relying party's random value (or a hash of one): 512 characters is generous,
/// and bounds what a request can make the code record (and the ID token) hold.
const MAX_NONCE_LEN: usize = 512;

/// `iss=<issuer>`, form-encoded, for [`with_query`].
fn iss_pair(issuer: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("iss", issuer)
        .finish()
}

/// `base` (a registered redirect URI as the URL parser writes it; validated at start-up: absolute,
/// no fragment) with `pairs` appended to its query, form-encoded, then `encoded` (`name=value`,
/// encoded already): what `Url::query_pairs_mut` does, without parsing the URI (host, IDNA)
/// again for every answer.
fn with_query<'a>(base: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>, encoded: &str) -> String {
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
    let mut out = query.finish();
    if out.len() > start {
        out.push('&');
    }
    out.push_str(encoded);
    out
}

#[cfg(test)]
mod tests {
    use super::{iss_pair, with_query};

    /// `with_query` answers exactly what the URL parser's own query building does, the issuer
    /// encoded once as `AuthorizeService::new` does.
    #[test]
    fn with_query_matches_the_url_parser() {
        let iss = "https://idp.example:8443/tenant one?x=é";
        let pairs = [("code", "a-b_c"), ("state", "x y&z=é/?#")];
        let iss_pair = iss_pair(iss);
        for registered in [
            "http://127.0.0.1:9000/callback",
            "https://App.Example/cb?tenant=1",
            "https://app.example/cb?",
            "https://app.example",
            "com.example.app:/oauth2redirect",
        ] {
            let mut expected = url::Url::parse(registered).unwrap();
            expected.query_pairs_mut().extend_pairs(pairs).append_pair("iss", iss);
            let base = String::from(url::Url::parse(registered).unwrap());
            assert_eq!(
                with_query(&base, pairs, &iss_pair),
                String::from(expected),
                "{registered}"
            );
            // No pairs before it: no separator of its own.
            let mut expected = url::Url::parse(registered).unwrap();
            expected.query_pairs_mut().append_pair("iss", iss);
            assert_eq!(with_query(&base, [], &iss_pair), String::from(expected), "{registered}");
        }
    }
}
