//! The application state handed to handlers: cheap-clone service handles, one field each, so a
//! handler takes exactly the `State<...>` it needs.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::clock::Clock;
use crate::health::HealthService;
use crate::service::admin::AdminService;
use crate::service::registration::RegistrationService;
use crate::service::{AuthorizeService, ClientRegistry, KeyService, LogoutService, SessionService, TokenService};
use crate::telemetry::Metrics;

/// HTTP-level settings the handlers need.
#[derive(Debug)]
pub struct WebConfig {
    pub issuer: String,
    /// `scheme://host[:port]` of the issuer, for the login form's same-origin check.
    pub issuer_origin: String,
    /// Set `Secure` on the session cookie (issuer is https).
    pub secure_cookie: bool,
    /// The RFC 8414 document, rendered once at start-up.
    pub metadata: bytes::Bytes,
    /// `Cache-Control: max-age` of the JWKS, in seconds.
    pub jwks_max_age: u64,
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub sessions: SessionService,
    pub authorize: AuthorizeService,
    pub tokens: TokenService,
    pub clients: ClientRegistry,
    pub keys: KeyService,
    pub logout: LogoutService,
    pub admin: AdminService,
    pub registration: RegistrationService,
    pub health: HealthService,
    pub metrics: Metrics,
    pub clock: Clock,
    pub web: Arc<WebConfig>,
}
