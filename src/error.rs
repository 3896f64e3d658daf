//! One error type for every client-facing failure. Its OAuth error code ([`ApiError::code`], the
//! one spelling of each, which `Display` writes too) and a fixed, safe description are the only
//! things a client ever sees of it. The status mapping is an exhaustive `match` with no `_` arm,
//! so a new variant forces a decision. Internal causes travel in the response's extensions to
//! [`log_error_cause`], which logs them once, inside the request span; they never leave the
//! process.

use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// `Display` is the OAuth error code; `source()` is the internal cause, if any.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or missing parameter; the text is a fixed description safe for clients.
    InvalidRequest(&'static str),
    /// Client authentication failed. `basic` says the client used HTTP Basic, so the answer
    /// carries `WWW-Authenticate: Basic`.
    InvalidClient {
        basic: bool,
    },
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    /// A `resource` (RFC 8707) that is malformed or not among the client's (or the grant's).
    InvalidTarget,
    /// A DPoP proof (RFC 9449) that is missing where required, malformed, stale, replayed, or
    /// of another request: 400 at the token endpoint, 401 at a resource (`at_resource`).
    InvalidDpopProof {
        at_resource: bool,
    },
    /// A DPoP-bound token without the proof of its key, or a token sent with the `DPoP` scheme
    /// that is not bound: 401 with a `DPoP` challenge.
    InvalidDpopToken,
    /// `prompt=none` without a session (OIDC Core 3.1.2.6); only ever sent by redirect.
    LoginRequired,
    /// `prompt=none` and the third-party client needs the user's consent (OIDC Core 3.1.2.6).
    ConsentRequired,
    /// The user denied the client's request (consent page).
    AccessDenied,
    /// `request` (a request object) is not supported (OIDC Core 6); only ever sent by redirect.
    RequestNotSupported,
    /// `request_uri` other than from PAR; only ever sent by redirect.
    RequestUriNotSupported,
    /// A PAR `request_uri` that is unknown, expired, used, or another client's (RFC 9126).
    InvalidRequestUri,
    /// No bearer token at all: 401 with a bare `WWW-Authenticate: Bearer` (RFC 6750 section 3.1).
    MissingToken,
    InvalidToken,
    InsufficientScope,
    /// An administration call with a valid token that lacks scope `admin`.
    AdminScopeRequired,
    /// Wrong username or password; the same whether the user exists or not.
    InvalidCredentials,
    /// A cross-site form post (login CSRF).
    CrossSite,
    /// Too many failures for this username, address or client; retry after the given seconds.
    Throttled {
        retry_after_secs: u64,
    },
    /// A JSON body with a bad field (admin API): the description names the field and what is
    /// wrong with it, never an internal detail.
    InvalidField(String),
    /// RFC 7591 section 3.2.2: a redirect URI of a registration is not acceptable.
    InvalidRedirectUri(String),
    /// RFC 7591 section 3.2.2: other client metadata is not acceptable.
    InvalidClientMetadata(String),
    /// The user or client is the config file's: read-only through the API (409).
    ManagedByConfig,
    /// The username or `sub` is taken (409).
    Conflict(&'static str),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// The request body did not arrive within `--body-timeout`.
    BodyTimeout,
    /// Load shedding or a timeout: the request was not (fully) served; try again shortly.
    Overloaded,
    /// A dependency (the store) is unreachable or out of connections.
    Unavailable(#[source] anyhow::Error),
    /// The memory store is at `--memory-store-capacity`: nothing new is issued until the sweeper
    /// frees room. Counted (`authplane_store_capacity_refusals_total`), not logged per request.
    StoreFull {
        retry_after_secs: u64,
    },
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<std::borrow::Cow<'static, str>>,
}

/// Seconds a shed or unavailable request should wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// The OAuth `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidField(_)
            | Self::PayloadTooLarge
            | Self::UnsupportedMediaType
            | Self::BodyTimeout => "invalid_request",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::ManagedByConfig => "managed_by_config",
            Self::Conflict(_) => "conflict",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::AccessDenied => "access_denied",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidRequestUri => "invalid_request_uri",
            Self::MissingToken | Self::InvalidToken | Self::InvalidDpopToken => "invalid_token",
            Self::InsufficientScope | Self::AdminScopeRequired => "insufficient_scope",
            Self::InvalidCredentials => "invalid_credentials",
            Self::CrossSite => "access_denied",
            Self::Throttled { .. } => "too_many_requests",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Overloaded | Self::Unavailable(_) | Self::StoreFull { .. } => "temporarily_unavailable",
            Self::Internal(_) => "server_error",
        }
    }

    /// A fixed description; never derived from an internal error.
    pub fn description(&self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest(d) => Some(d),
            Self::PayloadTooLarge => Some("request body too large"),
            Self::BodyTimeout => Some("the request body did not arrive in time"),
            Self::UnsupportedMediaType => Some("content type must be application/x-www-form-urlencoded"),
            Self::InvalidClient { .. } => Some("client authentication failed"),
            Self::InvalidGrant => Some("the grant is invalid, expired, revoked or was issued to another client"),
            Self::UnauthorizedClient => Some("the client may not use this grant type"),
            Self::UnsupportedGrantType => Some("unsupported grant_type"),
            Self::UnsupportedResponseType => Some("only response_type=code is supported"),
            Self::InvalidScope => Some("the requested scope is invalid or not allowed"),
            Self::InvalidTarget => Some("a requested resource is invalid or not allowed for this client"),
            Self::InvalidDpopProof { .. } => {
                Some("the DPoP proof is missing, invalid, stale, replayed or for another request")
            }
            Self::LoginRequired => Some("the user must log in"),
            Self::ConsentRequired => Some("the user has not consented to this client's request"),
            Self::AccessDenied => Some("the user denied the request"),
            Self::RequestNotSupported => Some("request objects are not supported"),
            Self::RequestUriNotSupported => Some("request_uri is not supported"),
            Self::InvalidRequestUri => Some("the request_uri is unknown, expired, already used or another client's"),
            Self::InsufficientScope => Some("the token lacks the openid scope or a user"),
            Self::AdminScopeRequired => Some("the token lacks the admin scope"),
            Self::CrossSite => Some("cross-site request refused"),
            Self::ManagedByConfig => Some("defined in the server's config file: read-only through the API"),
            Self::Conflict(d) => Some(d),
            Self::InvalidField(_) | Self::InvalidRedirectUri(_) | Self::InvalidClientMetadata(_) => {
                Some("invalid request body")
            }
            Self::MissingToken
            | Self::InvalidToken
            | Self::InvalidDpopToken
            | Self::InvalidCredentials
            | Self::Throttled { .. }
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::Overloaded
            | Self::Unavailable(_)
            | Self::StoreFull { .. }
            | Self::Internal(_) => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidField(_)
            | Self::InvalidRedirectUri(_)
            | Self::InvalidClientMetadata(_)
            | Self::InvalidGrant
            | Self::UnauthorizedClient
            | Self::UnsupportedGrantType
            | Self::UnsupportedResponseType
            | Self::InvalidScope
            | Self::InvalidTarget
            | Self::InvalidDpopProof { at_resource: false }
            | Self::LoginRequired
            | Self::RequestNotSupported
            | Self::RequestUriNotSupported
            | Self::InvalidRequestUri
            | Self::ConsentRequired => StatusCode::BAD_REQUEST,
            Self::InvalidClient { .. }
            | Self::MissingToken
            | Self::InvalidToken
            | Self::InvalidDpopToken
            | Self::InvalidDpopProof { at_resource: true }
            | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::AdminScopeRequired | Self::CrossSite | Self::AccessDenied => {
                StatusCode::FORBIDDEN
            }
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ManagedByConfig | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded | Self::Unavailable(_) | Self::StoreFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::InvalidClient { basic: true } => Some("Basic realm=\"authplane\""),
            Self::MissingToken => Some("Bearer realm=\"authplane\""),
            Self::InvalidToken => Some("Bearer realm=\"authplane\", error=\"invalid_token\""),
            // RFC 9449 section 7.1: the DPoP scheme, with the algorithms a proof may use.
            Self::InvalidDpopToken => {
                Some("DPoP realm=\"authplane\", error=\"invalid_token\", algs=\"ES256 EdDSA RS256\"")
            }
            Self::InvalidDpopProof { at_resource: true } => {
                Some("DPoP realm=\"authplane\", error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA RS256\"")
            }
            Self::InsufficientScope => {
                Some("Bearer realm=\"authplane\", error=\"insufficient_scope\", scope=\"openid\"")
            }
            Self::AdminScopeRequired => {
                Some("Bearer realm=\"authplane\", error=\"insufficient_scope\", scope=\"admin\"")
            }
            _ => None,
        }
    }

    /// The description a JSON answer carries: the field-level detail of a bad body, else the
    /// fixed [`ApiError::description`].
    fn json_description(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            Self::InvalidField(d) | Self::InvalidRedirectUri(d) | Self::InvalidClientMetadata(d) => {
                Some(std::borrow::Cow::Owned(d.clone()))
            }
            _ => self.description().map(std::borrow::Cow::Borrowed),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Full { retry_after_secs } => Self::StoreFull { retry_after_secs },
            StoreError::Internal(e) => Self::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code(),
            error_description: self.json_description(),
        };
        let mut res = (self.status(), Json(body)).into_response();
        let headers = res.headers_mut();
        if let Some(v) = self.www_authenticate() {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        match &self {
            Self::Throttled { retry_after_secs } | Self::StoreFull { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Overloaded | Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let cause = match self {
            Self::Internal(e) => Some(ErrorCause::Internal(Arc::new(e))),
            Self::Unavailable(e) => Some(ErrorCause::Unavailable(Arc::new(e))),
            _ => None,
        };
        if let Some(cause) = cause {
            res.extensions_mut().insert(cause);
        }
        res
    }
}

/// The internal cause of a 500 or 503 answer, on its way from [`ApiError::into_response`] to
/// [`log_error_cause`] in the response's extensions.
#[derive(Clone, Debug)]
enum ErrorCause {
    Internal(Arc<anyhow::Error>),
    Unavailable(Arc<anyhow::Error>),
}

/// The one place where error causes are logged: a `map_response` layer inside the request span
/// (`http::outer_layers`), so each cause is logged once, with the request id, and is then taken
/// out of the response.
pub fn log_error_cause<B>(mut res: axum::http::Response<B>) -> axum::http::Response<B> {
    match res.extensions_mut().remove::<ErrorCause>() {
        Some(ErrorCause::Internal(cause)) => tracing::error!(error = ?cause, "internal error"),
        Some(ErrorCause::Unavailable(cause)) => tracing::warn!(error = ?cause, "dependency unavailable"),
        None => {}
    }
    res
}
