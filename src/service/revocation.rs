//! Revocation (RFC 7009), introspection (RFC 7662) and the grant-revocation cascade.
//!
//! Revoking a grant takes effect at once: the grant row is marked revoked and every token of it is
//! checked against that row. Deleting the grant's tokens (the cascade) is cleanup, queued on a
//! bounded [`RevocationQueue`] that the sweeper drains; when the queue is full, the caller does the
//! cascade itself, so the queue can never grow without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use metrics::Gauge;
use serde::Serialize;

use crate::crypto::{self, RefreshToken};
use crate::domain::{GrantId, Scope, Timestamp};
use crate::error::ApiError;
use crate::service::tokens::{Audience, Confirmation};
use crate::service::{Client, TokenService};
use crate::store::{AccessTokenRecord, GrantOwner, GrantRecord, RefreshTokenRecord};
use crate::telemetry::{self, Metrics};

/// Work a revocation leaves for the background: a revoked grant's tokens to purge, or a removed
/// (or disabled, or re-passworded) user's or a deleted client's grants to revoke. What the
/// request itself changed already takes effect at once; this is the cascade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cascade {
    Grant(GrantId),
    /// A user's grants of logins at or before the instant (the change).
    UserGrants(Arc<str>, Timestamp),
    /// A client's grants of logins at or before the instant (its deletion).
    ClientGrants(Arc<str>, Timestamp),
}

/// Cascades not done yet, bounded.
pub struct RevocationQueue {
    queue: Mutex<VecDeque<Cascade>>,
    capacity: usize,
    pending: Gauge,
}

impl RevocationQueue {
    pub fn new(capacity: usize, metrics: &Metrics) -> Self {
        let pending = metrics.gauge(telemetry::REVOCATIONS_PENDING, &[]);
        pending.set(0.0);
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            pending,
        }
    }

    /// Queues a grant for purging; `false` when the queue is full.
    pub fn push(&self, id: GrantId) -> bool {
        self.push_cascade(Cascade::Grant(id))
    }

    /// Queues a cascade; `false` when the queue is full.
    pub fn push_cascade(&self, job: Cascade) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.capacity {
            return false;
        }
        q.push_back(job);
        self.pending.set(q.len() as f64);
        true
    }

    /// Puts back a job whose cascade failed, at the end. It was in the queue a moment ago, so
    /// the bound holds (give or take the job being drained).
    pub fn requeue(&self, job: Cascade) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(job);
        self.pending.set(q.len() as f64);
    }

    pub fn pop(&self) -> Option<Cascade> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let id = q.pop_front();
        self.pending.set(q.len() as f64);
        id
    }

    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 7662 section 2.2: `{"active": false}`, or the token's claims, written from the cached
/// record itself (no copies of its strings).
#[derive(Debug)]
pub enum Introspection<'a> {
    Inactive,
    /// An access token, with the issuer: its audience when it names no resource.
    Access(Arc<AccessTokenRecord>, &'a str),
    Refresh(Arc<RefreshTokenRecord>),
}

impl Serialize for Introspection<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        // The members both kinds of token have.
        let mut active = |scope: &Scope, client_id: &str, sub: &str, exp: Timestamp, iat: Timestamp, kind| {
            m.serialize_entry("active", &true)?;
            m.serialize_entry("scope", scope)?;
            m.serialize_entry("client_id", client_id)?;
            m.serialize_entry("sub", sub)?;
            m.serialize_entry("exp", &exp.secs())?;
            m.serialize_entry("iat", &iat.secs())?;
            m.serialize_entry("token_type", kind)
        };
        match self {
            Self::Inactive => m.serialize_entry("active", &false)?,
            Self::Access(t, issuer) => {
                // client_credentials tokens act for the client itself.
                let sub = t.sub.as_deref().unwrap_or(&t.client_id);
                active(&t.scope, &t.client_id, sub, t.expires_at, t.issued_at, "access_token")?;
                let aud = Audience {
                    resources: &t.resources,
                    issuer,
                };
                m.serialize_entry("aud", &aud)?;
                // A DPoP-bound access token: the thumbprint of its key (RFC 9449 section 6.2).
                if let Some(jkt) = &t.jkt {
                    m.serialize_entry("cnf", &Confirmation { jkt })?;
                }
            }
            Self::Refresh(t) => {
                active(
                    &t.scope,
                    &t.client_id,
                    &t.sub,
                    t.expires_at,
                    t.issued_at,
                    "refresh_token",
                )?;
            }
        }
        m.end()
    }
}

impl TokenService {
    /// Revokes a grant and everything descending from it. Once this returns, no cache on this
    /// node accepts any of its tokens.
    pub async fn revoke_grant(&self, grant: &GrantRecord, now: Timestamp) -> Result<(), ApiError> {
        let inner = &self.inner;
        inner.store.revoke_grant(grant, now).await?;
        inner.caches.grants.invalidate(&grant.id);
        if !inner.revocations.push(grant.id) {
            tracing::warn!("revocation queue full; purging the grant inline");
            self.purge_grant(&grant.id, 1000).await?;
        }
        Ok(())
    }

    /// Revokes the grants of login session `sid` (logout), `offline_access` ones excepted; their
    /// tokens are purged like any revoked grant's. Returns how many it revoked.
    pub async fn revoke_session_grants(&self, sid: &str, now: Timestamp) -> Result<usize, ApiError> {
        let inner = &self.inner;
        let ids = inner.store.revoke_session_grants(sid, now).await?;
        self.revoked(&ids).await?;
        Ok(ids.len())
    }

    /// After grants were revoked in the store: out of this node's cache, their tokens queued
    /// for purging.
    async fn revoked(&self, ids: &[GrantId]) -> Result<(), ApiError> {
        let inner = &self.inner;
        for id in ids {
            inner.caches.grants.invalidate(id);
            if !inner.revocations.push(*id) {
                tracing::warn!("revocation queue full; purging the grant inline");
                self.purge_grant(id, 1000).await?;
            }
        }
        Ok(())
    }

    /// Deletes a revoked grant's tokens in batches and drops them from the caches.
    pub async fn purge_grant(&self, id: &GrantId, batch: usize) -> Result<usize, ApiError> {
        let inner = &self.inner;
        let mut total = 0;
        loop {
            let hashes = inner.store.purge_grant_tokens(id, batch).await?;
            for h in &hashes {
                inner.caches.access_tokens.invalidate(h);
                inner.caches.refresh_tokens.invalidate(h);
            }
            total += hashes.len();
            if hashes.len() < batch {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Drains the revocation queue; returns how many cascades were done. A cascade that fails
    /// (the store is unreachable) goes back to the end of the queue for the next run, and this
    /// run stops there: every job is idempotent, none is lost, and one that keeps failing never
    /// holds up the others for more than one try per run.
    pub async fn purge_pending(&self, batch: usize, now: Timestamp) -> Result<usize, ApiError> {
        let queue = &self.inner.revocations;
        let mut n = 0;
        while let Some(job) = queue.pop() {
            if let Err(e) = self.cascade(job.clone(), batch, now).await {
                queue.requeue(job);
                return Err(e);
            }
            n += 1;
        }
        Ok(n)
    }

    /// One cascade: a grant's tokens purged, or an owner's grants revoked (and queued in turn).
    async fn cascade(&self, job: Cascade, batch: usize, now: Timestamp) -> Result<(), ApiError> {
        let (owner, before) = match &job {
            Cascade::Grant(id) => return self.purge_grant(id, batch).await.map(|_| ()),
            Cascade::UserGrants(sub, before) => (GrantOwner::User(sub), *before),
            Cascade::ClientGrants(id, before) => (GrantOwner::Client(id), *before),
        };
        let ids = self.inner.store.revoke_grants_of(owner, before, now).await?;
        tracing::info!(?job, grants = ids.len(), "cascade: grants revoked");
        self.revoked(&ids).await
    }

    /// Queues the cascade of a user's or client's removal; when the queue is full, does it now.
    pub async fn queue_cascade(&self, job: Cascade, now: Timestamp) -> Result<(), ApiError> {
        if self.inner.revocations.push_cascade(job.clone()) {
            return Ok(());
        }
        tracing::warn!("revocation queue full; running the cascade inline");
        self.cascade(job, 1000, now).await
    }

    pub fn revocations(&self) -> &RevocationQueue {
        &self.inner.revocations
    }

    /// RFC 7009: revokes `token` if it belongs to `client`; anything else is silently ignored.
    pub async fn revoke(
        &self,
        client: &Client,
        token: &str,
        hint: Option<&str>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let hash = crypto::hash_token(token);
        let store = &self.inner.store;
        let refresh_first = hint == Some("refresh_token");
        for refresh in [refresh_first, !refresh_first] {
            if refresh {
                // Any token of a family, current or rotated, names the grant to revoke.
                let Some(family) = RefreshToken::parse(token).map(|t| t.family) else {
                    continue;
                };
                if let Some(t) = store.get_refresh_token(&family).await? {
                    if t.client_id == client.client_id {
                        let grant = GrantRecord::of_refresh(&t);
                        self.revoke_grant(&grant, now).await?;
                        self.inner.caches.refresh_tokens.invalidate(&family);
                    } else {
                        tracing::info!(target: "security", client_id = %client.client_id, "revoke of another client's token ignored");
                    }
                    return Ok(());
                }
            } else if let Some((t, stored)) = match store.get_access_token(&hash).await? {
                Some(t) => Some((t, true)),
                None => self.unstored_access_token(token, hash).map(|t| (t, false)),
            } {
                if t.client_id == client.client_id {
                    if stored {
                        store.revoke_access_token(&hash, now).await?;
                    } else if t.expires_at > now {
                        // A client_credentials JWT: its revocation is the first the store hears of it.
                        store.revoke_unstored_access_token(&t, now).await?;
                    }
                    self.inner.caches.access_tokens.invalidate(&hash);
                } else {
                    tracing::info!(target: "security", client_id = %client.client_id, "revoke of another client's token ignored");
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// RFC 7662. A confidential client may introspect any token (it may be a resource server);
    /// a public client, which proves nothing about itself, only its own.
    pub async fn introspect(
        &self,
        client: &Client,
        token: &str,
        now: Timestamp,
    ) -> Result<Introspection<'_>, ApiError> {
        let may_see = |owner: &str| !client.is_public() || owner == &*client.client_id;
        if let Some(valid) = self.valid_access_token(token, Some(client), now).await? {
            if !may_see(&valid.record.client_id) {
                return Ok(Introspection::Inactive);
            }
            return Ok(Introspection::Access(valid.record, self.issuer()));
        }
        let Some(presented) = RefreshToken::parse(token) else {
            return Ok(Introspection::Inactive);
        };
        let store = &self.inner.store;
        let Some(t) = self
            .inner
            .caches
            .refresh_tokens
            .get_or_load(&presented.family, || store.get_refresh_token(&presented.family))
            .await?
        else {
            return Ok(Introspection::Inactive);
        };
        // Only the family's current token is active; a rotated one is not.
        let live = crypto::ct_eq(&t.hash.0, &presented.hash.0)
            && t.expires_at > now
            && self.active_grant(&t.grant_id, now).await?.is_some()
            && (self.inner.users)
                .behind_login(&t.sub, t.authenticated_at())
                .await?
                .is_some()
            && self.inner.clients.get(&t.client_id).await?.is_some();
        if !live || !may_see(&t.client_id) {
            return Ok(Introspection::Inactive);
        }
        Ok(Introspection::Refresh(t))
    }
}
