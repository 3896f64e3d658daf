//! A decorator over any store: a `store` span per call (with `op`, and `pool_wait_ms` filled in
//! by pooled stores) and `authplane_store_operation_duration_seconds{op}`. Every store call the
//! services make goes through it, so both implementations are observed the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Counter, Histogram};
use tracing::Instrument;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    AccessTokenRecord, ClientRecord, CodeCheck, CodeRecord, ConsentRecord, ConsumeOutcome, GrantOwner, GrantRecord,
    InvalidationFeed, InvalidationSink, PoolStatus, PushedRequestRecord, RecordCounts, RecordKind, RefreshTokenRecord,
    RotateOutcome, SessionRecord, SigningKeyRecord, Store, StoreError, StoreKind, StoreResult, UsedJtiRecord, UserKey,
    UserRecord, UserUpdate,
};
use crate::domain::{GrantId, Timestamp, TokenHash};
use crate::telemetry::{self, Metrics};

const OPS: &[&str] = &[
    "ping",
    "insert_session",
    "get_session",
    "delete_session",
    "insert_code",
    "consume_code",
    "insert_pushed_request",
    "get_pushed_request",
    "consume_pushed_request",
    "resume_pushed_request",
    "spend_jti",
    "insert_grant_tokens",
    "insert_access_token",
    "get_access_token",
    "get_refresh_token",
    "get_grant",
    "rotate_refresh_token",
    "revoke_access_token",
    "revoke_unstored_access_token",
    "revoke_grant",
    "revoke_session_grants",
    "purge_grant_tokens",
    "delete_expired",
    "get_consent",
    "put_consent",
    "signing_keys",
    "insert_signing_key",
    "update_signing_key",
    "delete_signing_key",
    "insert_user",
    "get_user",
    "list_users",
    "update_user",
    "delete_user",
    "insert_client",
    "get_client",
    "list_clients",
    "update_client",
    "delete_client",
    "revoke_grants_of",
];

pub struct Instrumented {
    inner: Arc<dyn Store>,
    /// Keyed by the ops' own names (ours, not a client's), so a fixed fast hash serves: SipHash
    /// was a visible share of a store call on the hot paths.
    durations: HashMap<&'static str, Histogram, foldhash::fast::FixedState>,
    /// Calls refused because the store is full (`authplane_store_capacity_refusals_total`).
    refusals: Counter,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Store>, metrics: &Metrics) -> Self {
        let durations = OPS
            .iter()
            .map(|op| (*op, metrics.histogram(telemetry::STORE_OP_DURATION, &[("op", op)])))
            .collect();
        let refusals = metrics.counter(telemetry::STORE_REFUSALS, &[]);
        refusals.absolute(0);
        Self {
            inner,
            durations,
            refusals,
        }
    }

    /// The wrapped store (tests reach through to inspect it).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    async fn observe<T>(&self, op: &'static str, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let span = tracing::debug_span!("store", op, pool_wait_ms = tracing::field::Empty);
        let start = Instant::now();
        let res = fut.instrument(span).await;
        if let Some(h) = self.durations.get(op) {
            h.record(start.elapsed().as_secs_f64());
        }
        if let Err(StoreError::Full { .. }) = &res {
            self.refusals.increment(1);
        }
        res
    }
}

#[async_trait]
impl Store for Instrumented {
    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }
    fn pool_status(&self) -> PoolStatus {
        self.inner.pool_status()
    }
    fn close(&self) {
        self.inner.close();
    }
    fn records(&self) -> Option<RecordCounts> {
        self.inner.records()
    }
    fn invalidations(
        &self,
        sink: Arc<dyn InvalidationSink>,
        connected: watch::Sender<bool>,
        cancel: CancellationToken,
    ) -> Option<InvalidationFeed> {
        self.inner.invalidations(sink, connected, cancel)
    }
    async fn ping(&self) -> StoreResult<()> {
        self.observe("ping", self.inner.ping()).await
    }
    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.observe("insert_session", self.inner.insert_session(s)).await
    }
    async fn get_session(&self, h: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        self.observe("get_session", self.inner.get_session(h)).await
    }
    async fn delete_session(&self, h: &TokenHash) -> StoreResult<bool> {
        self.observe("delete_session", self.inner.delete_session(h)).await
    }
    async fn insert_code(&self, c: &CodeRecord) -> StoreResult<()> {
        self.observe("insert_code", self.inner.insert_code(c)).await
    }
    async fn spend_jti(&self, j: &UsedJtiRecord) -> StoreResult<bool> {
        self.observe("spend_jti", self.inner.spend_jti(j)).await
    }
    async fn consume_code(&self, h: &TokenHash) -> StoreResult<ConsumeOutcome> {
        self.observe("consume_code", self.inner.consume_code(h)).await
    }
    async fn consume_code_if(&self, h: &TokenHash, accept: &CodeCheck<'_>) -> StoreResult<ConsumeOutcome> {
        // The code exchange's consume, as dashboards and BENCHMARKS.md have always named it.
        self.observe("consume_code", self.inner.consume_code_if(h, accept))
            .await
    }
    async fn resume_pushed_request(&self, p: &PushedRequestRecord) -> StoreResult<bool> {
        self.observe("resume_pushed_request", self.inner.resume_pushed_request(p))
            .await
    }
    async fn insert_pushed_request(&self, p: &PushedRequestRecord) -> StoreResult<()> {
        self.observe("insert_pushed_request", self.inner.insert_pushed_request(p))
            .await
    }
    async fn get_pushed_request(&self, h: &TokenHash) -> StoreResult<Option<PushedRequestRecord>> {
        self.observe("get_pushed_request", self.inner.get_pushed_request(h))
            .await
    }
    async fn consume_pushed_request(&self, h: &TokenHash) -> StoreResult<bool> {
        self.observe("consume_pushed_request", self.inner.consume_pushed_request(h))
            .await
    }
    async fn insert_grant_tokens(
        &self,
        g: &GrantRecord,
        a: &AccessTokenRecord,
        r: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()> {
        self.observe("insert_grant_tokens", self.inner.insert_grant_tokens(g, a, r))
            .await
    }
    async fn insert_access_token(&self, a: &AccessTokenRecord) -> StoreResult<()> {
        self.observe("insert_access_token", self.inner.insert_access_token(a))
            .await
    }
    async fn get_access_token(&self, h: &TokenHash) -> StoreResult<Option<AccessTokenRecord>> {
        self.observe("get_access_token", self.inner.get_access_token(h)).await
    }
    async fn get_refresh_token(&self, h: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        self.observe("get_refresh_token", self.inner.get_refresh_token(h)).await
    }
    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        self.observe("get_grant", self.inner.get_grant(id)).await
    }
    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        a: &AccessTokenRecord,
        r: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        self.observe("rotate_refresh_token", self.inner.rotate_refresh_token(presented, a, r))
            .await
    }
    async fn revoke_access_token(&self, h: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        self.observe("revoke_access_token", self.inner.revoke_access_token(h, now))
            .await
    }
    async fn revoke_unstored_access_token(&self, a: &AccessTokenRecord, now: Timestamp) -> StoreResult<()> {
        self.observe(
            "revoke_unstored_access_token",
            self.inner.revoke_unstored_access_token(a, now),
        )
        .await
    }
    async fn revoke_grant(&self, g: &GrantRecord, now: Timestamp) -> StoreResult<bool> {
        self.observe("revoke_grant", self.inner.revoke_grant(g, now)).await
    }
    async fn revoke_session_grants(&self, sid: &str, now: Timestamp) -> StoreResult<Vec<GrantId>> {
        self.observe("revoke_session_grants", self.inner.revoke_session_grants(sid, now))
            .await
    }
    async fn purge_grant_tokens(&self, id: &GrantId, limit: usize) -> StoreResult<Vec<TokenHash>> {
        self.observe("purge_grant_tokens", self.inner.purge_grant_tokens(id, limit))
            .await
    }
    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize> {
        self.observe("delete_expired", self.inner.delete_expired(kind, now, limit))
            .await
    }
    async fn get_consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<ConsentRecord>> {
        self.observe("get_consent", self.inner.get_consent(sub, client_id))
            .await
    }
    async fn put_consent(&self, consent: &ConsentRecord) -> StoreResult<()> {
        self.observe("put_consent", self.inner.put_consent(consent)).await
    }
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.observe("signing_keys", self.inner.signing_keys()).await
    }
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        self.observe("insert_signing_key", self.inner.insert_signing_key(key))
            .await
    }
    async fn update_signing_key(
        &self,
        kid: &str,
        active_from: Option<Timestamp>,
        withdrawn_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        self.observe(
            "update_signing_key",
            self.inner.update_signing_key(kid, active_from, withdrawn_at),
        )
        .await
    }
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<()> {
        self.observe("delete_signing_key", self.inner.delete_signing_key(kid))
            .await
    }
    async fn insert_user(&self, user: &UserRecord) -> StoreResult<bool> {
        self.observe("insert_user", self.inner.insert_user(user)).await
    }
    async fn get_user(&self, key: UserKey<'_>) -> StoreResult<Option<UserRecord>> {
        self.observe("get_user", self.inner.get_user(key)).await
    }
    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        self.observe("list_users", self.inner.list_users(after, limit)).await
    }
    async fn update_user(&self, sub: &str, change: &UserUpdate) -> StoreResult<Option<UserRecord>> {
        self.observe("update_user", self.inner.update_user(sub, change)).await
    }
    async fn delete_user(&self, sub: &str) -> StoreResult<bool> {
        self.observe("delete_user", self.inner.delete_user(sub)).await
    }
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<bool> {
        self.observe("insert_client", self.inner.insert_client(client)).await
    }
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.observe("get_client", self.inner.get_client(client_id)).await
    }
    async fn list_clients(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ClientRecord>> {
        self.observe("list_clients", self.inner.list_clients(after, limit))
            .await
    }
    async fn update_client(&self, client: &ClientRecord) -> StoreResult<bool> {
        self.observe("update_client", self.inner.update_client(client)).await
    }
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        self.observe("delete_client", self.inner.delete_client(client_id)).await
    }
    async fn revoke_grants_of(
        &self,
        owner: GrantOwner<'_>,
        before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<GrantId>> {
        self.observe("revoke_grants_of", self.inner.revoke_grants_of(owner, before, now))
            .await
    }
}
