//! The in-memory store: one dashmap per record kind. Atomic operations hold exactly one shard
//! guard and release it before touching any other map, so no two guards are ever held at once
//! (and never across an `.await`: nothing here awaits).
//!
//! The store is bounded: it holds at most `--memory-store-capacity` records, all kinds together
//! ([`Capacity`]). At the bound, issuing anything new (a session, a code, tokens) fails with
//! [`StoreError::Full`] (503) until the sweeper removes expired records; nothing live is ever
//! evicted, and nothing that ends or revokes a credential is ever refused.
//!
//! Each kind also has an [`ExpiryIndex`]: its keys filed by the second their record expires in,
//! so the sweeper's work is proportional to what expired. Scanning the maps instead cost time in
//! proportion to everything live, on a runtime worker, once per batch: with a few hundred thousand
//! live tokens that stalled the hot paths for hundreds of milliseconds at every sweep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{
    AccessTokenRecord, ClientRecord, CodeCheck, CodeRecord, ConsentRecord, ConsumeOutcome, GrantOwner, GrantRecord,
    PushedRequestRecord, RecordCounts, RecordKind, RefreshTokenRecord, RotateOutcome, SessionRecord, SigningKeyRecord,
    Store, StoreError, StoreKind, StoreResult, UsedJtiRecord, UserKey, UserRecord, UserUpdate,
};
use crate::domain::{GrantId, Timestamp, TokenHash, UniformKeys};

/// Locks of an expiry index: inserts spread over them, so concurrent writers rarely meet.
const EXPIRY_STRIPES: usize = 16;

/// A sweep batch examines at most this many index entries per record it may remove: entries of
/// records removed earlier (logout, a revoked grant's purge) are dropped on the way, and this
/// bounds the time one batch holds the worker even when most entries are such leftovers.
const EXAMINE_PER_REMOVAL: usize = 4;

/// Keys filed by the second in which their record expires (a record expiring at millisecond
/// `t` is in bucket `t div 1000`), each with that expiry. Each lock is held for one push or for
/// taking one batch, never for a walk over live records. An entry may outlive its record (a
/// deleted session); the sweep drops it when it is due.
struct ExpiryIndex<K> {
    stripes: Box<[Mutex<Buckets<K>>]>,
    next: AtomicUsize,
}

/// Second of expiry → the keys expiring in it, each with its exact expiry.
type Buckets<K> = BTreeMap<i64, Vec<(K, Timestamp)>>;

impl<K> Default for ExpiryIndex<K> {
    fn default() -> Self {
        Self {
            stripes: (0..EXPIRY_STRIPES).map(|_| Mutex::new(BTreeMap::new())).collect(),
            next: AtomicUsize::new(0),
        }
    }
}

impl<K> ExpiryIndex<K> {
    fn add(&self, key: K, expires_at: Timestamp) {
        let stripe = self.next.fetch_add(1, Ordering::Relaxed) % self.stripes.len();
        lock(&self.stripes[stripe])
            .entry(expires_at.millis().div_euclid(1000))
            .or_default()
            .push((key, expires_at));
    }

    /// Takes up to `limit` keys whose expiry is before `now`. Whole buckets that ended before
    /// `now` are drained without looking at their entries; only the bucket of the current second
    /// is filtered.
    fn take_due(&self, now: Timestamp, limit: usize) -> Vec<K> {
        let mut due = Vec::new();
        for stripe in &self.stripes {
            let mut buckets = lock(stripe);
            while due.len() < limit {
                let Some(mut bucket) = buckets.first_entry() else { break };
                let start = bucket.key().saturating_mul(1000);
                if start >= now.millis() {
                    break;
                }
                let entries = bucket.get_mut();
                if start.saturating_add(999) < now.millis() {
                    let n = entries.len().min(limit - due.len());
                    due.extend(entries.drain(entries.len() - n..).map(|(k, _)| k));
                } else {
                    let mut i = 0;
                    while i < entries.len() && due.len() < limit {
                        if entries[i].1 < now {
                            due.push(entries.swap_remove(i).0);
                        } else {
                            i += 1;
                        }
                    }
                }
                if entries.is_empty() {
                    bucket.remove();
                } else if due.len() < limit {
                    // The current second's bucket, with what has not expired yet: later buckets
                    // start after `now`.
                    break;
                }
            }
            if due.len() >= limit {
                break;
            }
        }
        due
    }

    /// Index entries held (records and leftovers of removed ones).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| lock(s).values().map(Vec::len).sum::<usize>())
            .sum()
    }
}

/// Up to `limit` values after the key `after`, in key order (keyset pagination).
fn page<V: Clone>(map: &BTreeMap<Arc<str>, V>, after: Option<&str>, limit: usize) -> Vec<V> {
    use std::ops::Bound;
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    map.range::<str, _>((start, Bound::Unbounded))
        .take(limit)
        .map(|(_, v)| v.clone())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a well-formed map (a push or a drain either happened
    // or not), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The bound on the records held, all kinds together. Issuing reserves room before it writes and
/// gives back what it did not use; every removal gives room back. A reservation is one atomic
/// add, so concurrent issuers never overshoot the bound.
struct Capacity {
    limit: usize,
    held: AtomicUsize,
    /// What a refused caller is told to wait: room comes back when the sweeper runs.
    retry_after_secs: u64,
    /// Set while full, so that reaching the bound is logged once, not once per refusal.
    full: AtomicBool,
}

impl Capacity {
    fn new(limit: usize, retry_after: Duration) -> Self {
        Self {
            limit,
            held: AtomicUsize::new(0),
            retry_after_secs: retry_after.as_secs().max(1),
            full: AtomicBool::new(false),
        }
    }

    /// Room for `n` more records, or [`StoreError::Full`].
    fn reserve(&self, n: usize) -> StoreResult<()> {
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) <= self.limit {
            return Ok(());
        }
        self.held.fetch_sub(n, Ordering::AcqRel);
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                capacity = self.limit,
                "memory store full; refusing new issuance until records expire"
            );
        }
        Err(StoreError::Full {
            retry_after_secs: self.retry_after_secs,
        })
    }

    /// Room for `n` revocation records (a tombstone of something the store never held, as a
    /// client_credentials JWT access token): these may go a tenth past the bound, so a
    /// revocation still works when issuance is refused, but a client that revokes in a loop
    /// what it was issued without a write cannot grow the store without end.
    fn reserve_revocation(&self, n: usize) -> StoreResult<()> {
        let limit = self.limit.saturating_add((self.limit / 10).max(1));
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) <= limit {
            return Ok(());
        }
        self.held.fetch_sub(n, Ordering::AcqRel);
        tracing::warn!(
            capacity = self.limit,
            "memory store full past its revocation reserve; refusing a revocation"
        );
        Err(StoreError::Full {
            retry_after_secs: self.retry_after_secs,
        })
    }

    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.held.fetch_sub(n, Ordering::AcqRel);
        if before.saturating_sub(n) < self.limit {
            self.full.store(false, Ordering::Relaxed);
        }
    }
}

/// One record kind: the records by key, and their keys by expiry. The records are boxed: a
/// table of live codes or tokens grows by doubling, and each growth moves every entry; inline
/// records (200 to 300 bytes) made that move, and the fresh pages it needs, most of the cost of
/// issuing a code while the table grew.
struct Table<K, V> {
    records: DashMap<K, Box<V>, UniformKeys>,
    expiry: ExpiryIndex<K>,
}

impl<K, V> Default for Table<K, V>
where
    K: Eq + std::hash::Hash,
{
    fn default() -> Self {
        Self {
            records: DashMap::with_hasher(UniformKeys),
            expiry: ExpiryIndex::default(),
        }
    }
}

impl<K, V> Table<K, V>
where
    K: Eq + std::hash::Hash + Clone,
    V: Expires,
{
    /// Returns how many records it added: 0 when it replaced one under the same key.
    fn insert(&self, key: K, record: V) -> usize {
        self.expiry.add(key.clone(), record.expires_at());
        usize::from(self.records.insert(key, Box::new(record)).is_none())
    }

    /// A copy of the record under `key`.
    fn get(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        self.records.get(key).map(|r| V::clone(&r))
    }

    /// Inserts only when the key is absent (atomically, under its shard's lock); 1 when it did.
    fn insert_new(&self, key: K, record: V) -> usize {
        match self.records.entry(key.clone()) {
            Entry::Occupied(_) => 0,
            Entry::Vacant(e) => {
                self.expiry.add(key, record.expires_at());
                e.insert(Box::new(record));
                1
            }
        }
    }

    /// Removes up to `limit` records that expired before `now`, calling `removed` for each (after
    /// its shard's guard is released). The removal re-checks the record under its shard's lock,
    /// so a concurrent write never loses a live record.
    fn sweep(&self, now: Timestamp, limit: usize, mut removed: impl FnMut(&K, &V)) -> usize {
        let mut count = 0;
        let mut examined = 0;
        while count < limit && examined < limit.saturating_mul(EXAMINE_PER_REMOVAL) {
            let keys = self.expiry.take_due(now, limit - count);
            if keys.is_empty() {
                break;
            }
            examined += keys.len();
            for key in keys {
                if let Some((key, record)) = self.records.remove_if(&key, |_, v| v.expires_at() < now) {
                    removed(&key, &record);
                    count += 1;
                }
            }
        }
        count
    }
}

trait Expires {
    fn expires_at(&self) -> Timestamp;
}

macro_rules! expires {
    ($($record:ty),*) => {$(
        impl Expires for $record {
            fn expires_at(&self) -> Timestamp {
                self.expires_at
            }
        }
    )*};
}
expires!(
    SessionRecord,
    CodeRecord,
    PushedRequestRecord,
    UsedJtiRecord,
    AccessTokenRecord,
    RefreshTokenRecord,
    GrantRecord
);

/// The grants of each login session or user, so a logout or a user's cascade does not scan every
/// grant. A grant leaves its list when it is swept; a cascade takes the whole list (minus what
/// it keeps).
#[derive(Default)]
struct GrantIndex(DashMap<Arc<str>, Vec<GrantId>>);

impl GrantIndex {
    fn add(&self, key: &Arc<str>, id: GrantId) {
        self.0.entry(Arc::clone(key)).or_default().push(id);
    }

    fn remove(&self, key: &str, id: &GrantId) {
        let emptied = self.0.get_mut(key).is_some_and(|mut ids| {
            ids.retain(|g| g != id);
            ids.is_empty()
        });
        if emptied {
            self.0.remove_if(key, |_, ids| ids.is_empty());
        }
    }

    fn take(&self, key: &str) -> Vec<GrantId> {
        self.0.remove(key).map(|(_, ids)| ids).unwrap_or_default()
    }

    fn extend(&self, key: &str, ids: Vec<GrantId>) {
        if !ids.is_empty() {
            self.0.entry(Arc::from(key)).or_default().extend(ids);
        }
    }
}

/// Runtime-managed users, by `sub` (ordered, for keyset pagination) and by username. Written by
/// the admin API only, read through the services' caches: one lock is enough.
#[derive(Default)]
struct Users {
    by_sub: BTreeMap<Arc<str>, UserRecord>,
    by_username: std::collections::HashMap<String, Arc<str>>,
}

pub struct MemoryStore {
    sessions: Table<TokenHash, SessionRecord>,
    codes: Table<TokenHash, CodeRecord>,
    access: Table<TokenHash, AccessTokenRecord>,
    /// By family: one record per grant, replaced in place at each rotation.
    refresh: Table<TokenHash, RefreshTokenRecord>,
    grants: Table<GrantId, GrantRecord>,
    pushed: Table<TokenHash, PushedRequestRecord>,
    jtis: Table<TokenHash, UsedJtiRecord>,
    /// The live tokens of each grant (its access tokens' hashes and its refresh family), so a
    /// revocation's cascade does not scan every token. An access token leaves its grant's list
    /// when it is swept: the list holds what is live, not every token a grant ever had.
    grant_tokens: DashMap<GrantId, Vec<TokenHash>, UniformKeys>,
    /// The grants made under each login session (`sid`), so a logout does not scan every
    /// grant. A grant leaves its session's list when it is swept; a logout takes the whole list.
    session_grants: GrantIndex,
    /// The grants of each user (`sub`), for the cascade of a user's deletion or password change.
    user_grants: GrantIndex,
    users: Mutex<Users>,
    /// Registered clients, by id (ordered, for keyset pagination).
    clients: Mutex<BTreeMap<Arc<str>, ClientRecord>>,
    /// Consents, by user and client: at most users × third-party clients, never swept.
    consents: DashMap<(Arc<str>, Arc<str>), ConsentRecord>,
    /// A handful of keys, read at start-up and on each key refresh: one lock is enough.
    signing_keys: Mutex<Vec<SigningKeyRecord>>,
    capacity: Capacity,
}

/// `--memory-store-capacity`'s default.
pub const DEFAULT_CAPACITY: usize = 2_000_000;

impl Default for MemoryStore {
    fn default() -> Self {
        Self::bounded(DEFAULT_CAPACITY, Duration::from_secs(60))
    }
}

impl MemoryStore {
    /// A store of the default capacity.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding at most `capacity` records; `retry_after` (the sweep interval) is what a
    /// caller refused at the bound is told to wait.
    pub fn bounded(capacity: usize, retry_after: Duration) -> Self {
        Self {
            sessions: Table::default(),
            codes: Table::default(),
            access: Table::default(),
            refresh: Table::default(),
            grants: Table::default(),
            pushed: Table::default(),
            jtis: Table::default(),
            grant_tokens: DashMap::with_hasher(UniformKeys),
            session_grants: GrantIndex::default(),
            user_grants: GrantIndex::default(),
            users: Mutex::default(),
            clients: Mutex::default(),
            consents: DashMap::new(),
            signing_keys: Mutex::new(Vec::new()),
            capacity: Capacity::new(capacity, retry_after),
        }
    }

    fn index(&self, grant: GrantId, hash: TokenHash) {
        self.grant_tokens.entry(grant).or_default().push(hash);
    }

    /// Drops a swept access token from its grant's list.
    fn unindex(&self, grant: &GrantId, hash: &TokenHash) {
        if let Some(mut hashes) = self.grant_tokens.get_mut(grant) {
            if let Some(i) = hashes.iter().position(|h| h == hash) {
                hashes.swap_remove(i);
            }
        }
    }

    /// Number of records of a kind (for tests and health).
    pub fn len(&self, kind: RecordKind) -> usize {
        match kind {
            RecordKind::Sessions => self.sessions.records.len(),
            RecordKind::Codes => self.codes.records.len(),
            RecordKind::AccessTokens => self.access.records.len(),
            RecordKind::RefreshTokens => self.refresh.records.len(),
            RecordKind::Grants => self.grants.records.len(),
            RecordKind::PushedRequests => self.pushed.records.len(),
            RecordKind::UsedJtis => self.jtis.records.len(),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    fn records(&self) -> Option<RecordCounts> {
        Some(RecordCounts {
            capacity: self.capacity.limit,
            held: self.capacity.held.load(Ordering::Acquire),
            by_kind: RecordKind::ALL.map(|k| self.len(k)),
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.capacity.reserve(1)?;
        let added = self.sessions.insert(session.hash, session.clone());
        self.capacity.release(1 - added);
        Ok(())
    }

    async fn get_session(&self, hash: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        Ok(self.sessions.get(hash))
    }

    async fn delete_session(&self, hash: &TokenHash) -> StoreResult<bool> {
        let removed = self.sessions.records.remove(hash).is_some();
        self.capacity.release(usize::from(removed));
        Ok(removed)
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        self.capacity.reserve(1)?;
        let added = self.codes.insert(code.hash, code.clone());
        self.capacity.release(1 - added);
        Ok(())
    }

    async fn insert_pushed_request(&self, pushed: &PushedRequestRecord) -> StoreResult<()> {
        self.capacity.reserve(1)?;
        let added = self.pushed.insert(pushed.hash, pushed.clone());
        self.capacity.release(1 - added);
        Ok(())
    }

    async fn get_pushed_request(&self, hash: &TokenHash) -> StoreResult<Option<PushedRequestRecord>> {
        Ok(self.pushed.get(hash))
    }

    async fn consume_pushed_request(&self, hash: &TokenHash) -> StoreResult<bool> {
        Ok(match self.pushed.records.get_mut(hash) {
            Some(mut p) if !p.consumed => {
                p.consumed = true;
                true
            }
            _ => false,
        })
    }

    async fn resume_pushed_request(&self, pushed: &PushedRequestRecord) -> StoreResult<bool> {
        let Some(mut p) = self.pushed.records.get_mut(&pushed.hash) else {
            return Ok(false);
        };
        if p.consumed {
            return Ok(false);
        }
        p.params.clone_from(&pushed.params);
        p.expires_at = pushed.expires_at;
        drop(p);
        // The entry at the old expiry finds the record not yet due and leaves it.
        self.pushed.expiry.add(pushed.hash, pushed.expires_at);
        Ok(true)
    }

    async fn spend_jti(&self, jti: &UsedJtiRecord) -> StoreResult<bool> {
        if self.jtis.records.contains_key(&jti.hash) {
            return Ok(false);
        }
        self.capacity.reserve(1)?;
        let added = self.jtis.insert_new(jti.hash, jti.clone());
        self.capacity.release(1 - added);
        Ok(added == 1)
    }

    async fn consume_code(&self, hash: &TokenHash) -> StoreResult<ConsumeOutcome> {
        self.consume_code_if(hash, &|_| true).await
    }

    async fn consume_code_if(&self, hash: &TokenHash, accept: &CodeCheck<'_>) -> StoreResult<ConsumeOutcome> {
        // Under the entry's lock: the check and the consume are one step for every caller.
        let Some(mut code) = self.codes.records.get_mut(hash) else {
            return Ok(ConsumeOutcome::NotFound);
        };
        if code.consumed {
            return Ok(ConsumeOutcome::AlreadyConsumed(CodeRecord::clone(&code)));
        }
        if !accept(&code) {
            return Ok(ConsumeOutcome::Refused(CodeRecord::clone(&code)));
        }
        let before = CodeRecord::clone(&code);
        code.consumed = true;
        Ok(ConsumeOutcome::Consumed(before))
    }

    async fn insert_grant_tokens(
        &self,
        grant: &GrantRecord,
        access: &AccessTokenRecord,
        refresh: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()> {
        let wanted = 2 + usize::from(refresh.is_some());
        self.capacity.reserve(wanted)?;
        let mut added = 0;
        if let Entry::Vacant(e) = self.grants.records.entry(grant.id) {
            e.insert(Box::new(grant.clone()));
            self.grants.expiry.add(grant.id, grant.expires_at);
            added += 1;
            if let Some(sid) = &grant.sid {
                self.session_grants.add(sid, grant.id);
            }
            self.user_grants.add(&grant.sub, grant.id);
        }
        self.index(grant.id, access.hash);
        added += self.access.insert(access.hash, access.clone());
        if let Some(r) = refresh {
            self.index(grant.id, r.family);
            added += self.refresh.insert(r.family, r.clone());
        }
        self.capacity.release(wanted - added);
        Ok(())
    }

    async fn insert_access_token(&self, access: &AccessTokenRecord) -> StoreResult<()> {
        self.capacity.reserve(1)?;
        let added = self.access.insert(access.hash, access.clone());
        self.capacity.release(1 - added);
        Ok(())
    }

    async fn get_access_token(&self, hash: &TokenHash) -> StoreResult<Option<AccessTokenRecord>> {
        Ok(self.access.get(hash))
    }

    async fn get_refresh_token(&self, family: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        Ok(self.refresh.get(family))
    }

    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        Ok(self.grants.get(id))
    }

    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        access: &AccessTokenRecord,
        next: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        // Room for the new access token first: a rotation refused at the bound leaves the
        // presented token current, so the client can retry it.
        self.capacity.reserve(1)?;
        {
            // The guard is dropped at the end of this block, before the inserts below. The record
            // keeps its expiry, so its expiry index entry stays right.
            let outcome = match self.refresh.records.get_mut(&next.family) {
                None => Some(RotateOutcome::NotFound),
                Some(current) if current.hash != *presented => Some(RotateOutcome::AlreadyRotated),
                Some(mut current) => {
                    **current = next.clone();
                    None
                }
            };
            if let Some(lost) = outcome {
                self.capacity.release(1);
                return Ok(lost);
            }
        }
        self.index(next.grant_id, access.hash);
        let added = self.access.insert(access.hash, access.clone());
        self.capacity.release(1 - added);
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke_access_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        Ok(match self.access.records.get_mut(hash) {
            Some(mut t) if t.revoked_at.is_none() => {
                t.revoked_at = Some(now);
                true
            }
            _ => false,
        })
    }

    async fn revoke_unstored_access_token(&self, token: &AccessTokenRecord, now: Timestamp) -> StoreResult<()> {
        if let Some(mut t) = self.access.records.get_mut(&token.hash) {
            t.revoked_at.get_or_insert(now);
            return Ok(());
        }
        // Kept until the token's expiry, in the revocation reserve past the bound.
        self.capacity.reserve_revocation(1)?;
        let added = self.access.insert(
            token.hash,
            AccessTokenRecord {
                revoked_at: Some(now),
                ..token.clone()
            },
        );
        self.capacity.release(1 - added);
        Ok(())
    }

    async fn revoke_grant(&self, tombstone: &GrantRecord, now: Timestamp) -> StoreResult<bool> {
        Ok(match self.grants.records.entry(tombstone.id) {
            Entry::Occupied(mut e) => {
                let was_active = e.get().revoked_at.is_none();
                if was_active {
                    e.get_mut().revoked_at = Some(now);
                }
                was_active
            }
            Entry::Vacant(e) => {
                // A tombstone goes in the revocation reserve past the bound.
                self.capacity.reserve_revocation(1)?;
                e.insert(Box::new(GrantRecord {
                    revoked_at: Some(now),
                    ..tombstone.clone()
                }));
                self.grants.expiry.add(tombstone.id, tombstone.expires_at);
                false
            }
        })
    }

    async fn revoke_session_grants(&self, sid: &str, now: Timestamp) -> StoreResult<Vec<GrantId>> {
        let ids = self.session_grants.take(sid);
        let mut revoked = Vec::new();
        let mut kept = Vec::new();
        for id in ids {
            let Some(mut grant) = self.grants.records.get_mut(&id) else {
                continue;
            };
            if grant.scope.contains("offline_access") {
                kept.push(id);
            } else if grant.revoked_at.is_none() {
                grant.revoked_at = Some(now);
                revoked.push(id);
            }
        }
        self.session_grants.extend(sid, kept);
        Ok(revoked)
    }

    async fn purge_grant_tokens(&self, id: &GrantId, limit: usize) -> StoreResult<Vec<TokenHash>> {
        let batch: Vec<TokenHash> = match self.grant_tokens.get_mut(id) {
            Some(mut hashes) => {
                let n = hashes.len().min(limit);
                hashes.drain(..n).collect()
            }
            None => return Ok(Vec::new()),
        };
        self.grant_tokens.remove_if(id, |_, v| v.is_empty());
        let mut removed = 0;
        for h in &batch {
            removed += usize::from(self.access.records.remove(h).is_some());
            removed += usize::from(self.refresh.records.remove(h).is_some());
        }
        self.capacity.release(removed);
        Ok(batch)
    }

    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize> {
        let removed = match kind {
            RecordKind::Sessions => self.sessions.sweep(now, limit, |_, _| ()),
            RecordKind::Codes => self.codes.sweep(now, limit, |_, _| ()),
            RecordKind::AccessTokens => self.access.sweep(now, limit, |hash, t| {
                if let Some(grant) = &t.grant_id {
                    self.unindex(grant, hash);
                }
            }),
            RecordKind::RefreshTokens => self.refresh.sweep(now, limit, |_, _| ()),
            // Every token of an expired grant has expired too: its index entry goes with it.
            RecordKind::Grants => self.grants.sweep(now, limit, |id, grant| {
                self.grant_tokens.remove(id);
                if let Some(sid) = &grant.sid {
                    self.session_grants.remove(sid, id);
                }
                self.user_grants.remove(&grant.sub, id);
            }),
            RecordKind::PushedRequests => self.pushed.sweep(now, limit, |_, _| ()),
            RecordKind::UsedJtis => self.jtis.sweep(now, limit, |_, _| ()),
        };
        self.capacity.release(removed);
        Ok(removed)
    }

    async fn get_consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<ConsentRecord>> {
        Ok(self
            .consents
            .get(&(Arc::from(sub), Arc::from(client_id)))
            .map(|c| c.clone()))
    }

    async fn put_consent(&self, consent: &ConsentRecord) -> StoreResult<()> {
        self.consents.insert(
            (Arc::clone(&consent.sub), Arc::clone(&consent.client_id)),
            consent.clone(),
        );
        Ok(())
    }

    async fn insert_user(&self, user: &UserRecord) -> StoreResult<bool> {
        let mut users = lock(&self.users);
        if users.by_sub.contains_key(&user.sub) || users.by_username.contains_key(&user.username) {
            return Ok(false);
        }
        self.capacity.reserve(1)?;
        users.by_username.insert(user.username.clone(), Arc::clone(&user.sub));
        users.by_sub.insert(Arc::clone(&user.sub), user.clone());
        Ok(true)
    }

    async fn get_user(&self, key: UserKey<'_>) -> StoreResult<Option<UserRecord>> {
        let users = lock(&self.users);
        let sub = match key {
            UserKey::Sub(sub) => sub,
            UserKey::Username(name) => match users.by_username.get(name) {
                Some(sub) => sub,
                None => return Ok(None),
            },
        };
        Ok(users.by_sub.get(sub).cloned())
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        Ok(page(&lock(&self.users).by_sub, after, limit))
    }

    async fn update_user(&self, sub: &str, c: &UserUpdate) -> StoreResult<Option<UserRecord>> {
        let mut users = lock(&self.users);
        let Some(u) = users.by_sub.get_mut(sub) else {
            return Ok(None);
        };
        if let Some(h) = &c.password_hash {
            u.password_hash.clone_from(h);
        }
        if let Some(n) = &c.name {
            u.name.clone_from(n);
        }
        if let Some(e) = &c.email {
            u.email.clone_from(e);
        }
        u.email_verified = c.email_verified.unwrap_or(u.email_verified);
        u.disabled = c.disabled.unwrap_or(u.disabled);
        u.not_before = c.not_before.map_or(u.not_before, |nb| nb.max(u.not_before));
        u.updated_at = c.updated_at;
        Ok(Some(u.clone()))
    }

    async fn delete_user(&self, sub: &str) -> StoreResult<bool> {
        let removed = {
            let mut users = lock(&self.users);
            let removed = users.by_sub.remove(sub);
            if let Some(u) = &removed {
                users.by_username.remove(&u.username);
            }
            removed.is_some()
        };
        if removed {
            self.capacity.release(1);
            self.consents.retain(|(s, _), _| &**s != sub);
        }
        Ok(removed)
    }

    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<bool> {
        let mut clients = lock(&self.clients);
        if clients.contains_key(&client.client_id) {
            return Ok(false);
        }
        self.capacity.reserve(1)?;
        clients.insert(Arc::clone(&client.client_id), client.clone());
        Ok(true)
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        Ok(lock(&self.clients).get(client_id).cloned())
    }

    async fn list_clients(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ClientRecord>> {
        Ok(page(&lock(&self.clients), after, limit))
    }

    async fn update_client(&self, client: &ClientRecord) -> StoreResult<bool> {
        let mut clients = lock(&self.clients);
        let Some(stored) = clients.get_mut(&client.client_id) else {
            return Ok(false);
        };
        *stored = ClientRecord {
            created_at: stored.created_at,
            ..client.clone()
        };
        Ok(true)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let removed = lock(&self.clients).remove(client_id).is_some();
        if removed {
            self.capacity.release(1);
            self.consents.retain(|(_, c), _| &**c != client_id);
        }
        Ok(removed)
    }

    async fn revoke_grants_of(
        &self,
        owner: GrantOwner<'_>,
        before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<GrantId>> {
        let ids: Vec<GrantId> = match owner {
            GrantOwner::User(sub) => self.user_grants.take(sub),
            // A client's grants are not indexed (a popular client has millions, and the index
            // would be paid on every code redemption for an action that is rare): this runs in
            // the background cascade, never on a request.
            GrantOwner::Client(client_id) => self
                .grants
                .records
                .iter()
                .filter(|g| &*g.client_id == client_id && g.revoked_at.is_none())
                .map(|g| g.id)
                .collect(),
        };
        // Grants made after the change (the user's new logins) stay, and stay indexed.
        let mut later = Vec::new();
        let mut revoked = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(mut grant) = self.grants.records.get_mut(&id) else {
                continue;
            };
            if grant.authenticated_at() > before {
                later.push(id);
            } else if grant.revoked_at.is_none() {
                grant.revoked_at = Some(now);
                revoked.push(id);
            }
        }
        if let GrantOwner::User(sub) = owner {
            self.user_grants.extend(sub, later);
        }
        Ok(revoked)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        Ok(lock(&self.signing_keys).clone())
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        let mut keys = lock(&self.signing_keys);
        if keys.iter().any(|k| k.alg == key.alg && k.generation == key.generation) {
            return Ok(false);
        }
        keys.push(key.clone());
        Ok(true)
    }

    async fn update_signing_key(
        &self,
        kid: &str,
        active_from: Option<Timestamp>,
        withdrawn_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        if let Some(key) = lock(&self.signing_keys).iter_mut().find(|k| k.kid == kid) {
            if let Some(t) = active_from {
                key.active_from = key.active_from.min(t);
            }
            if withdrawn_at.is_some() {
                key.withdrawn_at = key.withdrawn_at.or(withdrawn_at);
            }
        }
        Ok(())
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<()> {
        lock(&self.signing_keys).retain(|k| k.kid != kid);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
