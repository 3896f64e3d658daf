//! A store wrapper for fault and overload tests: delegates to the real memory store, and can be
//! told to fail (internal or unavailable) or to hold every call until released.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use async_trait::async_trait;
use authplane::domain::{GrantId, Timestamp, TokenHash};
use authplane::store::memory::MemoryStore;
use authplane::store::*;
use tokio::sync::{Notify, Semaphore};

pub struct TestStore {
    pub inner: MemoryStore,
    mode: AtomicU8,
    /// Calls made through the wrapper (to prove shed requests never reached the store).
    pub calls: AtomicUsize,
    /// When holding, each call waits for a permit here.
    gate: Semaphore,
    holding: AtomicU8,
    /// Signalled whenever a call starts waiting at the gate.
    pub arrived: Notify,
    pub waiting: AtomicUsize,
}

impl Default for TestStore {
    fn default() -> Self {
        Self {
            inner: MemoryStore::new(),
            mode: AtomicU8::new(NORMAL),
            calls: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            holding: AtomicU8::new(0),
            arrived: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }
}

pub const NORMAL: u8 = 0;
pub const INTERNAL: u8 = 1;
pub const UNAVAILABLE: u8 = 2;

impl TestStore {
    pub fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    pub fn hold(&self) {
        self.holding.store(1, Ordering::SeqCst);
    }

    /// Lets every held and future call through.
    pub fn release(&self) {
        self.holding.store(0, Ordering::SeqCst);
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Waits until `n` calls are held at the gate.
    pub async fn until_waiting(&self, n: usize) {
        loop {
            let notified = self.arrived.notified();
            if self.waiting.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    async fn before(&self) -> StoreResult<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) == 1 {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            self.arrived.notify_waiters();
            let permit = self.gate.acquire().await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Ok(p) = permit {
                p.forget();
            }
        }
        match self.mode.load(Ordering::SeqCst) {
            INTERNAL => Err(StoreError::Internal(anyhow::anyhow!(
                "relation \"tokens\" is corrupt: SECRET-DETAIL"
            ))),
            UNAVAILABLE => Err(StoreError::Unavailable(anyhow::anyhow!(
                "connection refused: SECRET-DETAIL"
            ))),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Store for TestStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }
    fn records(&self) -> Option<RecordCounts> {
        self.inner.records()
    }
    async fn ping(&self) -> StoreResult<()> {
        match self.mode.load(Ordering::SeqCst) {
            NORMAL => Ok(()),
            _ => Err(StoreError::Unavailable(anyhow::anyhow!("down"))),
        }
    }
    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.before().await?;
        self.inner.insert_session(s).await
    }
    async fn get_session(&self, h: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        self.before().await?;
        self.inner.get_session(h).await
    }
    async fn delete_session(&self, h: &TokenHash) -> StoreResult<bool> {
        self.before().await?;
        self.inner.delete_session(h).await
    }
    async fn insert_code(&self, c: &CodeRecord) -> StoreResult<()> {
        self.before().await?;
        self.inner.insert_code(c).await
    }
    async fn resume_pushed_request(&self, p: &PushedRequestRecord) -> StoreResult<bool> {
        self.before().await?;
        self.inner.resume_pushed_request(p).await
    }
    async fn consume_code_if(&self, h: &TokenHash, accept: &CodeCheck<'_>) -> StoreResult<ConsumeOutcome> {
        self.before().await?;
        self.inner.consume_code_if(h, accept).await
    }
    async fn spend_jti(&self, j: &UsedJtiRecord) -> StoreResult<bool> {
        self.before().await?;
        self.inner.spend_jti(j).await
    }
    async fn consume_code(&self, h: &TokenHash) -> StoreResult<ConsumeOutcome> {
        self.before().await?;
        self.inner.consume_code(h).await
    }
    async fn insert_pushed_request(&self, p: &PushedRequestRecord) -> StoreResult<()> {
        self.before().await?;
        self.inner.insert_pushed_request(p).await
    }
    async fn get_pushed_request(&self, h: &TokenHash) -> StoreResult<Option<PushedRequestRecord>> {
        self.before().await?;
        self.inner.get_pushed_request(h).await
    }
    async fn consume_pushed_request(&self, h: &TokenHash) -> StoreResult<bool> {
        self.before().await?;
        self.inner.consume_pushed_request(h).await
    }
    async fn insert_grant_tokens(
        &self,
        g: &GrantRecord,
        a: &AccessTokenRecord,
        r: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()> {
        self.before().await?;
        self.inner.insert_grant_tokens(g, a, r).await
    }
    async fn insert_access_token(&self, a: &AccessTokenRecord) -> StoreResult<()> {
        self.before().await?;
        self.inner.insert_access_token(a).await
    }
    async fn get_access_token(&self, h: &TokenHash) -> StoreResult<Option<AccessTokenRecord>> {
        self.before().await?;
        self.inner.get_access_token(h).await
    }
    async fn get_refresh_token(&self, h: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        self.before().await?;
        self.inner.get_refresh_token(h).await
    }
    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        self.before().await?;
        self.inner.get_grant(id).await
    }
    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        a: &AccessTokenRecord,
        r: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        self.before().await?;
        self.inner.rotate_refresh_token(presented, a, r).await
    }
    async fn revoke_access_token(&self, h: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        self.before().await?;
        self.inner.revoke_access_token(h, now).await
    }
    async fn revoke_unstored_access_token(&self, a: &AccessTokenRecord, now: Timestamp) -> StoreResult<()> {
        self.before().await?;
        self.inner.revoke_unstored_access_token(a, now).await
    }
    async fn revoke_grant(&self, g: &GrantRecord, now: Timestamp) -> StoreResult<bool> {
        self.before().await?;
        self.inner.revoke_grant(g, now).await
    }
    async fn purge_grant_tokens(&self, id: &GrantId, limit: usize) -> StoreResult<Vec<TokenHash>> {
        self.before().await?;
        self.inner.purge_grant_tokens(id, limit).await
    }
    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize> {
        self.before().await?;
        self.inner.delete_expired(kind, now, limit).await
    }
    async fn revoke_session_grants(&self, sid: &str, now: Timestamp) -> StoreResult<Vec<GrantId>> {
        self.before().await?;
        self.inner.revoke_session_grants(sid, now).await
    }
    async fn get_consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<ConsentRecord>> {
        self.before().await?;
        self.inner.get_consent(sub, client_id).await
    }
    async fn put_consent(&self, consent: &ConsentRecord) -> StoreResult<()> {
        self.before().await?;
        self.inner.put_consent(consent).await
    }
    async fn insert_user(&self, user: &UserRecord) -> StoreResult<bool> {
        self.before().await?;
        self.inner.insert_user(user).await
    }
    async fn get_user(&self, key: UserKey<'_>) -> StoreResult<Option<UserRecord>> {
        self.before().await?;
        self.inner.get_user(key).await
    }
    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        self.before().await?;
        self.inner.list_users(after, limit).await
    }
    async fn update_user(&self, sub: &str, change: &UserUpdate) -> StoreResult<Option<UserRecord>> {
        self.before().await?;
        self.inner.update_user(sub, change).await
    }
    async fn delete_user(&self, sub: &str) -> StoreResult<bool> {
        self.before().await?;
        self.inner.delete_user(sub).await
    }
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<bool> {
        self.before().await?;
        self.inner.insert_client(client).await
    }
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.before().await?;
        self.inner.get_client(client_id).await
    }
    async fn list_clients(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ClientRecord>> {
        self.before().await?;
        self.inner.list_clients(after, limit).await
    }
    async fn update_client(&self, client: &ClientRecord) -> StoreResult<bool> {
        self.before().await?;
        self.inner.update_client(client).await
    }
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        self.before().await?;
        self.inner.delete_client(client_id).await
    }
    async fn revoke_grants_of(
        &self,
        owner: GrantOwner<'_>,
        before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<GrantId>> {
        self.before().await?;
        self.inner.revoke_grants_of(owner, before, now).await
    }
    // Signing keys pass straight through: the key refresh runs on its own schedule and must
    // not count as (or wait like) a request's store call.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.inner.signing_keys().await
    }
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        self.inner.insert_signing_key(key).await
    }
    async fn update_signing_key(
        &self,
        kid: &str,
        active_from: Option<Timestamp>,
        withdrawn_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        self.inner.update_signing_key(kid, active_from, withdrawn_at).await
    }
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<()> {
        self.inner.delete_signing_key(kid).await
    }
}
