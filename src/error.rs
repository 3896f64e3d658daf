//! One error type for every client-facing failure. Its `#[error]` texts are the OAuth error codes
//! and are the only thing a client ever sees of it, with a fixed, safe description. The status
//! mapping is an exhaustive `match` with no `_` arm, so a new variant forces a decision. Internal
//! causes are logged once, inside the request span, and never leave the process.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or missing parameter; the text is a fixed description safe for clients.
    #[error("invalid_request")]
    InvalidRequest(&'static str),
    /// Client authentication failed. `basic` says the client used HTTP Basic, so the answer
    /// carries `WWW-Authenticate: Basic`.
    #[error("invalid_client")]
    InvalidClient { basic: bool },
    #[error("invalid_grant")]
    InvalidGrant,
    #[error("unauthorized_client")]
    UnauthorizedClient,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("unsupported_response_type")]
    UnsupportedResponseType,
    #[error("invalid_scope")]
    InvalidScope,
    /// `prompt=none` without a session (OIDC Core 3.1.2.6); only ever sent by redirect.
    #[error("login_required")]
    LoginRequired,
    /// No bearer token at all: 401 with a bare `WWW-Authenticate: Bearer` (RFC 6750 section 3.1).
    #[error("invalid_token")]
    MissingToken,
    #[error("invalid_token")]
    InvalidToken,
    #[error("insufficient_scope")]
    InsufficientScope,
    /// Wrong username or password; the same whether the user exists or not.
    #[error("invalid_credentials")]
    InvalidCredentials,
    /// A cross-site form post (login CSRF).
    #[error("access_denied")]
    CrossSite,
    /// Too many failures for this username, address or client; retry after the given seconds.
    #[error("too_many_requests")]
    Throttled { retry_after_secs: u64 },
    #[error("not_found")]
    NotFound,
    #[error("method_not_allowed")]
    MethodNotAllowed,
    #[error("invalid_request")]
    PayloadTooLarge,
    #[error("invalid_request")]
    UnsupportedMediaType,
    #[error("invalid_request")]
    HeadersTooLarge,
    /// Load shedding or a timeout: the request was not (fully) served; try again shortly.
    #[error("temporarily_unavailable")]
    Overloaded,
    /// A dependency (the store) is unreachable or out of connections.
    #[error("temporarily_unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("server_error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'static str>,
}

/// Seconds a shed or unavailable request should wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// The OAuth `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::PayloadTooLarge | Self::UnsupportedMediaType | Self::HeadersTooLarge => {
                "invalid_request"
            }
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::LoginRequired => "login_required",
            Self::MissingToken | Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidCredentials => "invalid_credentials",
            Self::CrossSite => "access_denied",
            Self::Throttled { .. } => "too_many_requests",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Overloaded | Self::Unavailable(_) => "temporarily_unavailable",
            Self::Internal(_) => "server_error",
        }
    }

    /// A fixed description; never derived from an internal error.
    pub fn description(&self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest(d) => Some(d),
            Self::PayloadTooLarge => Some("request body too large"),
            Self::UnsupportedMediaType => Some("content type must be application/x-www-form-urlencoded"),
            Self::HeadersTooLarge => Some("request headers too large"),
            Self::InvalidClient { .. } => Some("client authentication failed"),
            Self::InvalidGrant => Some("the grant is invalid, expired, revoked or was issued to another client"),
            Self::UnauthorizedClient => Some("the client may not use this grant type"),
            Self::UnsupportedGrantType => Some("unsupported grant_type"),
            Self::UnsupportedResponseType => Some("only response_type=code is supported"),
            Self::InvalidScope => Some("the requested scope is invalid or not allowed"),
            Self::LoginRequired => Some("the user is not logged in"),
            Self::InsufficientScope => Some("the token lacks the openid scope or a user"),
            Self::CrossSite => Some("cross-site request refused"),
            Self::MissingToken
            | Self::InvalidToken
            | Self::InvalidCredentials
            | Self::Throttled { .. }
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::Overloaded
            | Self::Unavailable(_)
            | Self::Internal(_) => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidGrant
            | Self::UnauthorizedClient
            | Self::UnsupportedGrantType
            | Self::UnsupportedResponseType
            | Self::InvalidScope
            | Self::LoginRequired => StatusCode::BAD_REQUEST,
            Self::InvalidClient { .. } | Self::MissingToken | Self::InvalidToken | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::InsufficientScope | Self::CrossSite => StatusCode::FORBIDDEN,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Overloaded | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::InvalidClient { basic: true } => Some("Basic realm=\"authplane\""),
            Self::MissingToken => Some("Bearer realm=\"authplane\""),
            Self::InvalidToken => Some("Bearer realm=\"authplane\", error=\"invalid_token\""),
            Self::InsufficientScope => {
                Some("Bearer realm=\"authplane\", error=\"insufficient_scope\", scope=\"openid\"")
            }
            _ => None,
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Internal(e) => Self::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(error = ?cause, "dependency unavailable"),
            _ => {}
        }
        let body = ErrorBody {
            error: self.code(),
            error_description: self.description(),
        };
        let mut res = (self.status(), Json(body)).into_response();
        let headers = res.headers_mut();
        if let Some(v) = self.www_authenticate() {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        match &self {
            Self::Throttled { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Overloaded | Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}
