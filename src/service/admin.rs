//! The administration API (`/admin/...`), authorised by access tokens with scope `admin` (the
//! demo's `demo-admin` client gets them with client_credentials). Every action is logged on the
//! `audit` target and counted in `authplane_admin_actions_total{action}`.
//!
//! So far: `POST /admin/keys/rotate`. The user and client management of the administration issue
//! builds on the same authorisation, audit and counting.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::Counter;
use serde::Serialize;

use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::jose::Alg;
use crate::service::keys::KeyState;
use crate::service::{KeyService, TokenService};
use crate::telemetry::{self, Metrics};

/// The actions, as `authplane_admin_actions_total`'s `action` label.
pub const ACTIONS: [&str; 1] = ["keys_rotate"];

/// A key as the rotation's answer shows it (public facts only).
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub kid: String,
    pub alg: Alg,
    pub state: &'static str,
}

#[derive(Clone)]
pub struct AdminService {
    inner: Arc<Inner>,
}

struct Inner {
    tokens: TokenService,
    keys: KeyService,
    actions: HashMap<&'static str, Counter>,
}

/// Who called: the client of the admin token (for the audit log).
pub struct Admin {
    pub client_id: Arc<str>,
}

impl AdminService {
    pub fn new(tokens: TokenService, keys: KeyService, metrics: &Metrics) -> Self {
        let actions = ACTIONS
            .into_iter()
            .map(|a| {
                let c = metrics.counter(telemetry::ADMIN_ACTIONS, &[("action", a)]);
                c.absolute(0);
                (a, c)
            })
            .collect();
        Self {
            inner: Arc::new(Inner { tokens, keys, actions }),
        }
    }

    /// The caller of an admin endpoint: a valid access token with scope `admin`. No token or an
    /// invalid one is 401, a token without the scope 403.
    pub async fn authorize(&self, token: Option<&str>, now: Timestamp) -> Result<Admin, ApiError> {
        let token = token.ok_or(ApiError::MissingToken)?;
        let record = self
            .inner
            .tokens
            .valid_access_token(token, now)
            .await?
            .ok_or(ApiError::InvalidToken)?;
        if !record.scope.contains("admin") {
            tracing::info!(target: "security", client_id = %record.client_id, "admin call without the admin scope");
            return Err(ApiError::AdminScopeRequired);
        }
        Ok(Admin {
            client_id: Arc::clone(&record.client_id),
        })
    }

    /// `POST /admin/keys/rotate`: every algorithm's successor signs from now on; with
    /// `retire_now` the replaced keys leave the JWKS at once (a compromise).
    pub async fn rotate_keys(&self, admin: &Admin, retire_now: bool) -> Result<Vec<KeyView>, ApiError> {
        let inner = &self.inner;
        inner.keys.rotate_now(retire_now).await.map_err(ApiError::internal)?;
        self.done(admin, "keys_rotate", &format!("retire_now={retire_now}"));
        Ok(inner
            .keys
            .states()
            .into_iter()
            .filter(|(_, _, s)| *s != KeyState::Gone)
            .map(|(kid, alg, state)| KeyView {
                kid,
                alg,
                state: state.as_str(),
            })
            .collect())
    }

    fn done(&self, admin: &Admin, action: &'static str, detail: &str) {
        tracing::info!(target: "audit", action, client_id = %admin.client_id, detail, "admin action");
        if let Some(c) = self.inner.actions.get(action) {
            c.increment(1);
        }
    }
}
