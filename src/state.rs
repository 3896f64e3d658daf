//! The application state handed to handlers: the service handles behind one `Arc`, and a
//! `FromRef` for each, so a handler takes exactly the `State<...>` it needs.

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

/// What the handlers share: one `Arc`, so the router's clone of it for every request is one
/// atomic increment however many services there are. A handler takes exactly the `State<...>` it
/// needs (each [`FromRef`] clones one service handle).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The service handles of [`AppState`].
pub struct Services {
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

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// `State<T>` for each service: `FromRef<AppState> for T`, a clone of that one handle.
macro_rules! from_ref {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.0.$field.clone()
            }
        })*
    };
}

from_ref!(
    sessions: SessionService,
    authorize: AuthorizeService,
    tokens: TokenService,
    clients: ClientRegistry,
    keys: KeyService,
    logout: LogoutService,
    admin: AdminService,
    registration: RegistrationService,
    health: HealthService,
    metrics: Metrics,
    clock: Clock,
    web: Arc<WebConfig>,
);
