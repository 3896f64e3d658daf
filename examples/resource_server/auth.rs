//! Validating authplane's JWT access tokens (RFC 9068) in an axum resource server: the part of
//! this example to copy into a service. It needs `axum`, `jsonwebtoken` (with a crypto backend:
//! feature `rust_crypto` or `aws_lc_rs`), `reqwest` (feature `json`, and a TLS feature such as
//! `rustls-tls` for an `https` issuer), `serde`, `serde_json`, `tokio` and `tracing`.
//!
//! A handler that takes an [`AccessToken`] runs only for a token that is:
//! - signed by a key of the issuer's JWKS, checked with the algorithm that key's JWK names. The
//!   header's `alg` must equal it; `none` and HMAC are never accepted, whatever the header says
//!   (the header is written by whoever made the token);
//! - of `typ` `at+jwt` (RFC 9068 section 2.1): an ID token is signed by the same keys, and is not
//!   an access token;
//! - issued by the issuer (`iss`), meant for this resource server (`aud` names it), and within
//!   its `exp` (and `nbf`, when present), give or take [`LEEWAY_SECS`];
//! - not DPoP-bound (no `cnf`). A bound token is only good with a DPoP proof of its key (RFC 9449
//!   section 7: the proof's signature, `htm`, `htu`, `iat`, `jti` replay, `ath`, and `cnf.jkt`
//!   equal to the proof key's thumbprint). Checking proofs is out of this example's scope, so it
//!   refuses bound tokens rather than take them as bearer tokens, and takes `Bearer` only.
//!
//! Scopes are the handler's to check ([`AccessToken::has_scope`], [`AuthError::InsufficientScope`]).
//!
//! The JWKS is fetched once and cached (see [`Verifier`]). A signature check alone does not see a
//! revocation: a revoked token is accepted until its `exp`. Where that matters, keep authplane's
//! `--access-token-ttl` short or ask its introspection endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Tokens naming a `kid` we do not know make at most one JWKS fetch per this long, and a failed
/// fetch is not retried sooner: made-up `kid`s must not become a stream of requests to the issuer.
/// Real rotations need no quick retry: authplane publishes a key `--key-publish-ahead` (1 hour by
/// default) before it signs anything, so a cache that honours `max-age` knows it in time.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(10);

/// How long fetched keys are fresh when the JWKS has no `Cache-Control: max-age` (authplane always
/// sends one), and the longest a `max-age` is taken for.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A JWKS fetch that takes longer fails: requests wait on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks access tokens against the issuer's JWKS. Cheap to clone (one `Arc`): put it in the
/// router's state, and [`AccessToken`] finds it there through `FromRef`.
///
/// # The key cache
/// - The JWKS is fetched on the first token, and again when it goes stale: after the `max-age` of
///   its `Cache-Control` (at least [`REFRESH_FLOOR`]). A stale key keeps working while the issuer
///   cannot be reached; a key the new JWKS no longer has (withdrawn) stops working.
/// - A token whose `kid` is unknown makes a fetch, at most once per [`REFRESH_FLOOR`] (the first
///   fetch aside); in between such tokens are refused without one.
/// - Concurrent fetches are one: requests that find a fetch in flight wait for it and use its
///   keys, whatever made them want one.
/// - While the JWKS cannot be fetched, a token with an unknown `kid` is 503 (it may be good), not
///   401; the fetch is retried after [`REFRESH_FLOOR`].
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Exactly authplane's `--issuer`: `iss` must equal it.
    issuer: String,
    /// This resource server's identifier (its `resource` URI): `aud` must name it.
    audience: String,
    jwks_uri: String,
    http: reqwest::Client,
    /// Read on every request; written at the end of a fetch. Never held across an `.await`.
    cache: RwLock<Cache>,
    /// Held for the length of a fetch: one at a time, and the requests that wait for it use its keys.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<Key>>,
    /// When the keys go stale; `None` until a fetch succeeded.
    fresh_until: Option<Instant>,
    /// No fetch before this: set by a fetch for an unknown `kid` (but the first) and by a failure.
    quiet_until: Option<Instant>,
    /// The last fetch failed.
    failing: bool,
    /// Counts finished fetches: a request that waited for someone else's fetch sees it changed.
    generation: u64,
}

/// A verification key and the one algorithm its JWK allows.
struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

impl Verifier {
    /// A verifier for tokens of `issuer` (exactly as authplane's `--issuer`) meant for `audience`
    /// (this resource server's URI, one of the client's `resources`). The JWKS is read from
    /// `<issuer>/auth/jwks` (the `jwks_uri` of authplane's metadata).
    pub fn new(issuer: &str, audience: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                audience: audience.to_owned(),
                jwks_uri: format!("{}/auth/jwks", issuer.trim_end_matches('/')),
                http,
                cache: RwLock::new(Cache::default()),
                fetching: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
            }),
        })
    }

    /// How many times the JWKS was fetched (successfully or not). The example's `main` does not
    /// read it; its test does, and a service would export it as a metric.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Checks `token` (the module documentation says what that means) and returns its claims.
    /// The reason for a refusal is logged at debug level, never returned to the caller.
    pub async fn verify(&self, token: &str) -> Result<AccessToken, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| refuse("malformed JWT", &e))?;
        let typ = header.typ.as_deref().unwrap_or_default();
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(refuse("typ is not at+jwt", &typ));
        }
        let kid = header.kid.as_deref().ok_or_else(|| refuse("no kid", &""))?;
        let key = self.key(kid).await?;
        // `decode` would refuse this too; said here because it is the point: the key decides.
        if header.alg != key.alg {
            return Err(refuse("alg differs from the key's", &header.alg));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| refuse("signature or claims", &e))?
            .claims;
        if claims.cnf.is_some() {
            return Err(refuse("DPoP-bound (cnf), and DPoP proofs are not checked here", &""));
        }
        Ok(claims.token)
    }

    /// The key named `kid`, from the cache or, when it is stale or does not know `kid`, from a
    /// fetch (as the type's documentation says).
    async fn key(&self, kid: &str) -> Result<Arc<Key>, AuthError> {
        let now = Instant::now();
        let (known, fresh, quiet, failing, generation) = {
            let cache = self.read();
            (
                cache.keys.get(kid).cloned(),
                cache.fresh_until.is_some_and(|t| now < t),
                cache.quiet_until.is_some_and(|t| now < t),
                cache.failing,
                cache.generation,
            )
        };
        match known {
            Some(key) if fresh || quiet => Ok(key),
            Some(key) => {
                self.refresh(generation, false).await;
                let cache = self.read();
                match cache.keys.get(kid) {
                    Some(key) => Ok(Arc::clone(key)),
                    // The issuer is out of reach: the stale key is the best we know.
                    None if cache.failing => Ok(key),
                    None => Err(refuse("kid left the JWKS", &kid)),
                }
            }
            None if quiet && failing => Err(AuthError::Unavailable),
            None if quiet => Err(refuse("unknown kid (no JWKS fetch before the floor)", &kid)),
            None => {
                self.refresh(generation, true).await;
                let cache = self.read();
                match cache.keys.get(kid) {
                    Some(key) => Ok(Arc::clone(key)),
                    None if cache.failing => Err(AuthError::Unavailable),
                    None => Err(refuse("unknown kid", &kid)),
                }
            }
        }
    }

    /// Fetches the JWKS unless a fetch finished since the caller read `seen` (it waited for that
    /// one, whose keys are as new as ours would be). A failure keeps the keys we have.
    async fn refresh(&self, seen: u64, unknown_kid: bool) {
        let _fetching = self.inner.fetching.lock().await;
        let first = {
            let cache = self.read();
            if cache.generation != seen {
                return;
            }
            cache.fresh_until.is_none()
        };
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch().await;
        let now = Instant::now();
        let mut cache = self.inner.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.generation += 1;
        match result {
            Ok((keys, max_age)) => {
                tracing::debug!(keys = keys.len(), ?max_age, "JWKS fetched");
                cache.keys = keys;
                cache.fresh_until = Some(now + max_age.clamp(REFRESH_FLOOR, LONGEST_MAX_AGE));
                cache.failing = false;
                if unknown_kid && !first {
                    cache.quiet_until = Some(now + REFRESH_FLOOR);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jwks_uri = %self.inner.jwks_uri, "JWKS fetch failed; keeping the keys we have");
                cache.failing = true;
                cache.quiet_until = Some(now + REFRESH_FLOOR);
            }
        }
    }

    /// One GET of the JWKS: its usable keys by `kid`, and its `max-age`.
    async fn fetch(&self) -> Result<(HashMap<String, Arc<Key>>, Duration), reqwest::Error> {
        let res = self
            .inner
            .http
            .get(&self.inner.jwks_uri)
            .send()
            .await?
            .error_for_status()?;
        let max_age = max_age(res.headers()).unwrap_or(DEFAULT_MAX_AGE);
        let jwks: JwkSet = res.json().await?;
        Ok((jwks.keys.into_iter().filter_map(usable).collect(), max_age))
    }

    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.inner.cache.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The JWKS with each key left as JSON, so that one key of a type the JOSE library does not know
/// is skipped instead of failing the whole set.
#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// A JWKS entry as a verification key, if it is one: a `kid`, `use` `sig` or none, and an
/// asymmetric signature `alg` in the JWK itself. A key without `alg` is skipped rather than
/// given the token's (authplane names it on every key); an HMAC or `oct` entry is never a key
/// here, as a public JWKS cannot hold the secret that checks such a signature.
fn usable(value: serde_json::Value) -> Option<(String, Arc<Key>)> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
        || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
    {
        return None;
    }
    let alg = match jwk.common.key_algorithm? {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((jwk.common.key_id?, Arc::new(Key { alg, key })))
}

/// `max-age` of a `Cache-Control` header, if any.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    value
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
        .map(Duration::from_secs)
}

/// What a handler learns of the caller: the checked token's claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessToken {
    /// The user, or the client itself for a client_credentials token (then `sub` = `client_id`).
    pub sub: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Space-separated scopes; see [`AccessToken::has_scope`].
    #[serde(default)]
    pub scope: String,
    /// The token's unique id (to log, or to remember for replay checks).
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    /// When the user last authenticated; absent from client_credentials tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

impl AccessToken {
    /// Whether `scope` is one of the token's scopes.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// The claims as decoded: the token's, and `cnf`, which only matters to [`Verifier::verify`].
#[derive(Deserialize)]
struct Claims {
    #[serde(flatten)]
    token: AccessToken,
    #[serde(default)]
    cnf: Option<serde::de::IgnoredAny>,
}

/// The extractor: `Authorization: Bearer <token>`, checked by the state's [`Verifier`].
impl<S> FromRequestParts<S> for AccessToken
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let token = bearer_token(&parts.headers)?;
        Verifier::from_ref(state).verify(token).await
    }
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 section 2.1; the scheme is
/// case-insensitive). Another scheme (`DPoP` among them) counts as no token at all.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let value = value.to_str().map_err(|e| refuse("Authorization is not ASCII", &e))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(refuse("malformed Bearer credentials", &""));
    }
    Ok(token)
}

/// Why a request did not reach its handler. The answer says as much as RFC 6750 section 3 asks
/// and no more: why a token was refused stays in the resource server's log.
#[derive(Debug)]
pub enum AuthError {
    /// No bearer token: 401 with a bare `WWW-Authenticate: Bearer` (RFC 6750 section 3.1).
    MissingToken,
    /// The token is not acceptable, whatever the reason: 401 `invalid_token`.
    InvalidToken,
    /// A good token without the scope the handler needs: 403 `insufficient_scope`, naming it.
    InsufficientScope(&'static str),
    /// The JWKS could not be fetched, so the token could not be checked: 503, try again.
    Unavailable,
}

/// Logs why a token is refused (at debug level: clients can make these at will) and says only
/// that it is.
fn refuse(reason: &'static str, detail: &dyn std::fmt::Debug) -> AuthError {
    tracing::debug!(reason, ?detail, "access token refused");
    AuthError::InvalidToken
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, challenge, error) = match self {
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "Bearer".to_owned(), None),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                r#"Bearer error="invalid_token""#.to_owned(),
                Some("invalid_token"),
            ),
            Self::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                format!(r#"Bearer error="insufficient_scope", scope="{scope}""#),
                Some("insufficient_scope"),
            ),
            Self::Unavailable => {
                let retry_after = HeaderValue::from(REFRESH_FLOOR.as_secs());
                let body = Json(serde_json::json!({ "error": "temporarily_unavailable" }));
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, retry_after)],
                    body,
                )
                    .into_response();
            }
        };
        let mut res = match error {
            Some(error) => (status, Json(serde_json::json!({ "error": error }))).into_response(),
            None => status.into_response(),
        };
        if let Ok(challenge) = HeaderValue::try_from(challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        res
    }
}
