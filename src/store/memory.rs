//! The in-memory store: one dashmap per record kind. Atomic operations hold exactly one shard
//! guard and release it before touching any other map, so no two guards are ever held at once
//! (and never across an `.await`: nothing here awaits).

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{
    AccessTokenRecord, CodeRecord, ConsumeOutcome, GrantRecord, RecordKind, RefreshTokenRecord, RotateOutcome,
    SessionRecord, Store, StoreKind, StoreResult,
};
use crate::domain::{GrantId, Timestamp, TokenHash, UniformKeys};

/// How many expired keys one pass of the sweeper collects before deleting them in batches.
const SCAN_CHUNK: usize = 64 * 1024;

#[derive(Default)]
pub struct MemoryStore {
    sessions: DashMap<TokenHash, SessionRecord, UniformKeys>,
    codes: DashMap<TokenHash, CodeRecord, UniformKeys>,
    access: DashMap<TokenHash, AccessTokenRecord, UniformKeys>,
    refresh: DashMap<TokenHash, RefreshTokenRecord, UniformKeys>,
    grants: DashMap<GrantId, GrantRecord, UniformKeys>,
    /// The tokens of each grant, so a revocation's cascade does not scan every token.
    grant_tokens: DashMap<GrantId, Vec<TokenHash>, UniformKeys>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn index(&self, grant: GrantId, hash: TokenHash) {
        self.grant_tokens.entry(grant).or_default().push(hash);
    }

    /// Number of records of a kind (for tests and health).
    pub fn len(&self, kind: RecordKind) -> usize {
        match kind {
            RecordKind::Sessions => self.sessions.len(),
            RecordKind::Codes => self.codes.len(),
            RecordKind::AccessTokens => self.access.len(),
            RecordKind::RefreshTokens => self.refresh.len(),
            RecordKind::Grants => self.grants.len(),
        }
    }
}

/// Removes up to `limit` entries whose expiry is before `now`. Collects keys under read guards,
/// then removes each with a re-check, so a concurrent write never loses a live record.
fn sweep_map<K, V>(
    map: &DashMap<K, V, UniformKeys>,
    now: Timestamp,
    limit: usize,
    expires: impl Fn(&V) -> Timestamp,
) -> usize
where
    K: Eq + std::hash::Hash + Clone,
{
    let keys: Vec<K> = map
        .iter()
        .filter(|e| expires(e.value()) < now)
        .map(|e| e.key().clone())
        .take(limit.min(SCAN_CHUNK))
        .collect();
    keys.iter()
        .filter(|k| map.remove_if(*k, |_, v| expires(v) < now).is_some())
        .count()
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.sessions.insert(session.hash, session.clone());
        Ok(())
    }

    async fn get_session(&self, hash: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        Ok(self.sessions.get(hash).map(|r| r.clone()))
    }

    async fn delete_session(&self, hash: &TokenHash) -> StoreResult<bool> {
        Ok(self.sessions.remove(hash).is_some())
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        self.codes.insert(code.hash, code.clone());
        Ok(())
    }

    async fn consume_code(&self, hash: &TokenHash) -> StoreResult<ConsumeOutcome> {
        let Some(mut code) = self.codes.get_mut(hash) else {
            return Ok(ConsumeOutcome::NotFound);
        };
        if code.consumed {
            return Ok(ConsumeOutcome::AlreadyConsumed(code.clone()));
        }
        let before = code.clone();
        code.consumed = true;
        Ok(ConsumeOutcome::Consumed(before))
    }

    async fn insert_grant_tokens(
        &self,
        grant: &GrantRecord,
        access: &AccessTokenRecord,
        refresh: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()> {
        self.grants.entry(grant.id).or_insert_with(|| grant.clone());
        self.index(grant.id, access.hash);
        self.access.insert(access.hash, access.clone());
        if let Some(r) = refresh {
            self.index(grant.id, r.hash);
            self.refresh.insert(r.hash, r.clone());
        }
        Ok(())
    }

    async fn insert_access_token(&self, access: &AccessTokenRecord) -> StoreResult<()> {
        self.access.insert(access.hash, access.clone());
        Ok(())
    }

    async fn get_access_token(&self, hash: &TokenHash) -> StoreResult<Option<AccessTokenRecord>> {
        Ok(self.access.get(hash).map(|r| r.clone()))
    }

    async fn get_refresh_token(&self, hash: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        Ok(self.refresh.get(hash).map(|r| r.clone()))
    }

    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        Ok(self.grants.get(id).map(|r| r.clone()))
    }

    async fn rotate_refresh_token(
        &self,
        old: &TokenHash,
        now: Timestamp,
        access: &AccessTokenRecord,
        refresh: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        {
            // The guard is dropped at the end of this block, before the inserts below, which may
            // land on the same shard.
            let Some(mut old) = self.refresh.get_mut(old) else {
                return Ok(RotateOutcome::NotFound);
            };
            if old.rotated_at.is_some() {
                return Ok(RotateOutcome::AlreadyRotated);
            }
            old.rotated_at = Some(now);
        }
        self.index(refresh.grant_id, refresh.hash);
        self.index(refresh.grant_id, access.hash);
        self.refresh.insert(refresh.hash, refresh.clone());
        self.access.insert(access.hash, access.clone());
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke_access_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        Ok(match self.access.get_mut(hash) {
            Some(mut t) if t.revoked_at.is_none() => {
                t.revoked_at = Some(now);
                true
            }
            _ => false,
        })
    }

    async fn revoke_grant(&self, tombstone: &GrantRecord, now: Timestamp) -> StoreResult<bool> {
        Ok(match self.grants.entry(tombstone.id) {
            Entry::Occupied(mut e) => {
                let was_active = e.get().revoked_at.is_none();
                if was_active {
                    e.get_mut().revoked_at = Some(now);
                }
                was_active
            }
            Entry::Vacant(e) => {
                e.insert(GrantRecord {
                    revoked_at: Some(now),
                    ..tombstone.clone()
                });
                false
            }
        })
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
        for h in &batch {
            self.access.remove(h);
            self.refresh.remove(h);
        }
        Ok(batch)
    }

    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize> {
        Ok(match kind {
            RecordKind::Sessions => sweep_map(&self.sessions, now, limit, |r| r.expires_at),
            RecordKind::Codes => sweep_map(&self.codes, now, limit, |r| r.expires_at),
            RecordKind::AccessTokens => sweep_map(&self.access, now, limit, |r| r.expires_at),
            RecordKind::RefreshTokens => sweep_map(&self.refresh, now, limit, |r| r.expires_at),
            RecordKind::Grants => {
                let n = sweep_map(&self.grants, now, limit, |r| r.expires_at);
                // Every token of an expired grant has expired too; drop the index entries of
                // grants that no longer exist.
                self.grant_tokens.retain(|id, _| self.grants.contains_key(id));
                n
            }
        })
    }
}
