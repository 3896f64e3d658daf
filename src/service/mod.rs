//! Services own the logic: caches, store access, orchestration and error mapping. Handlers in
//! `http/` only parse, call one of these and map the result.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::RecordCache;
use crate::domain::{GrantId, TokenHash};
use async_trait::async_trait;

use crate::store::{AccessTokenRecord, GrantRecord, Invalidation, InvalidationSink, RefreshTokenRecord, SessionRecord};
use crate::telemetry::Metrics;

pub mod admin;
pub mod assertions;
pub mod authorize;
pub mod clients;
pub mod consent;
pub mod dpop;
pub mod grants;
pub mod hasher;
pub mod id_token;
pub mod keys;
pub mod logout;
pub mod registration;
pub mod revocation;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use authorize::{AuthorizeOutcome, AuthorizeRequest, AuthorizeService};
pub use clients::{Client, ClientCredentials, ClientRegistry, ClientRegistryParts};
pub use keys::{KeyPolicy, KeyService};
pub use logout::LogoutService;
pub use revocation::RevocationQueue;
pub use sessions::SessionService;
pub use tokens::TokenService;
pub use users::UserDirectory;

/// Lifetimes of what the server issues.
#[derive(Clone, Copy, Debug)]
pub struct Ttls {
    pub session: Duration,
    pub code: Duration,
    pub access_token: Duration,
    pub refresh_token: Duration,
    pub id_token: Duration,
    /// A pushed authorization request's `request_uri` (`--par-ttl`).
    pub pushed_request: Duration,
}

/// The record caches in front of the store, shared by the services and the invalidation paths.
pub struct Caches {
    pub sessions: RecordCache<TokenHash, SessionRecord>,
    pub access_tokens: RecordCache<TokenHash, AccessTokenRecord>,
    pub refresh_tokens: RecordCache<TokenHash, RefreshTokenRecord>,
    pub grants: RecordCache<GrantId, GrantRecord>,
}

impl Caches {
    pub fn new(capacity: u64, ttl: Duration, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            sessions: RecordCache::new("sessions", capacity, ttl, metrics),
            access_tokens: RecordCache::new("access_tokens", capacity, ttl, metrics),
            refresh_tokens: RecordCache::new("refresh_tokens", capacity, ttl, metrics),
            grants: RecordCache::new("grants", capacity, ttl, metrics),
        })
    }
}

/// Other nodes' changes land here (the store's invalidation feed).
#[async_trait]
impl InvalidationSink for Caches {
    async fn invalidate(&self, inv: Invalidation) {
        match inv {
            Invalidation::Session(h) => self.sessions.invalidate(&h),
            Invalidation::AccessToken(h) => self.access_tokens.invalidate(&h),
            Invalidation::RefreshToken(h) => self.refresh_tokens.invalidate(&h),
            Invalidation::Grant(g) => self.grants.invalidate(&g),
            // Not cached here: the node sink hands these to the directory and the registry.
            Invalidation::SigningKeys | Invalidation::User(_) | Invalidation::Client(_) => {}
        }
    }

    /// Used when other nodes' changes may have been missed.
    fn invalidate_all(&self) {
        self.sessions.invalidate_all();
        self.access_tokens.invalidate_all();
        self.refresh_tokens.invalidate_all();
        self.grants.invalidate_all();
    }
}

/// What another node's changes reach on this node: the caches, the runtime-managed users and
/// clients, and the signing keys (a rotation at once re-read at once, not at the next scheduled
/// refresh).
pub struct NodeSink {
    pub caches: Arc<Caches>,
    pub keys: KeyService,
    pub users: Arc<UserDirectory>,
    pub clients: ClientRegistry,
}

#[async_trait]
impl InvalidationSink for NodeSink {
    async fn invalidate(&self, inv: Invalidation) {
        match inv {
            Invalidation::SigningKeys => {
                if let Err(e) = self.keys.refresh().await {
                    tracing::error!(error = %e, "signing key refresh after another node's rotation failed");
                }
            }
            Invalidation::User(sub) => self.users.cache().invalidate(&*sub),
            Invalidation::Client(id) => self.clients.cache().invalidate(&*id),
            other => self.caches.invalidate(other).await,
        }
    }

    fn invalidate_all(&self) {
        // Keys missed meanwhile are read at the next scheduled refresh (within a minute).
        self.caches.invalidate_all();
        self.users.cache().invalidate_all();
        self.clients.cache().invalidate_all();
    }
}
