//! The memory store's own tests: its indexes, bounds and sweep (the contract both stores keep
//! is in tests/api/store_contract.rs).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::crypto::{generate_grant_id, hash_token};
use crate::domain::Scope;

fn access(i: usize, expires_at: Timestamp) -> AccessTokenRecord {
    AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        hash: hash_token(&format!("t{i}")),
        client_id: Arc::from("c"),
        sub: None,
        scope: Scope::default(),
        grant_id: None,
        issued_at: Timestamp::from_millis(0),
        expires_at,
        revoked_at: None,
    }
}

#[tokio::test]
async fn a_sweep_takes_what_expired_and_never_looks_at_what_is_live() {
    let store = MemoryStore::new();
    let now = Timestamp::from_millis(1_000_000_500);
    for i in 0..1000 {
        store
            .insert_access_token(&access(i, now.plus(Duration::from_secs(3600))))
            .await
            .unwrap();
    }
    for i in 1000..1250 {
        let expired = Timestamp::from_millis(now.millis() - 1 - i64::try_from(i).unwrap());
        store.insert_access_token(&access(i, expired)).await.unwrap();
    }
    let mut removed = Vec::new();
    loop {
        let n = store.delete_expired(RecordKind::AccessTokens, now, 100).await.unwrap();
        removed.push(n);
        if n < 100 {
            break;
        }
    }
    assert_eq!(removed, [100, 100, 50]);
    assert_eq!(store.len(RecordKind::AccessTokens), 1000);
    // What is left in the index is exactly the live records: a sweep took nothing else.
    assert_eq!(store.access.expiry.len(), 1000);
}

#[tokio::test]
async fn the_current_second_is_swept_to_the_millisecond() {
    let store = MemoryStore::new();
    let now = Timestamp::from_millis(5_000_500);
    store
        .insert_access_token(&access(1, Timestamp::from_millis(5_000_499)))
        .await
        .unwrap();
    store
        .insert_access_token(&access(2, Timestamp::from_millis(5_000_500)))
        .await
        .unwrap();
    store
        .insert_access_token(&access(3, Timestamp::from_millis(5_000_999)))
        .await
        .unwrap();
    assert_eq!(
        store.delete_expired(RecordKind::AccessTokens, now, 10).await.unwrap(),
        1
    );
    assert!(store.access.records.contains_key(&hash_token("t2")));
    assert_eq!(store.access.expiry.len(), 2);
    let later = Timestamp::from_millis(5_001_000);
    assert_eq!(
        store.delete_expired(RecordKind::AccessTokens, later, 10).await.unwrap(),
        2
    );
    assert_eq!(store.access.expiry.len(), 0);
}

#[tokio::test]
async fn leftovers_of_removed_records_are_dropped_and_not_counted() {
    let store = MemoryStore::new();
    let expired = Timestamp::from_millis(1_000);
    for i in 0..10 {
        let hash = hash_token(&format!("s{i}"));
        let session = SessionRecord {
            hash,
            sub: Arc::from("u"),
            auth_time: expired,
            expires_at: expired,
        };
        store.insert_session(&session).await.unwrap();
        if i % 2 == 0 {
            store.delete_session(&hash).await.unwrap();
        }
    }
    let now = Timestamp::from_millis(10_000);
    assert_eq!(store.delete_expired(RecordKind::Sessions, now, 100).await.unwrap(), 5);
    assert_eq!(store.sessions.expiry.len(), 0);
    assert_eq!(store.len(RecordKind::Sessions), 0);
}

fn grant(expires_at: Timestamp) -> GrantRecord {
    GrantRecord {
        resources: Default::default(),
        id: generate_grant_id(),
        client_id: Arc::from("c"),
        sub: Arc::from("u"),
        scope: Scope::default(),
        created_at: Timestamp::from_millis(0),
        expires_at,
        revoked_at: None,
        auth_time: None,
        sid: None,
    }
}

fn refresh(g: &GrantRecord, i: u32) -> RefreshTokenRecord {
    RefreshTokenRecord {
        jkt: None,
        resources: Default::default(),
        family: hash_token("family"),
        hash: hash_token(&format!("r{i}")),
        generation: i,
        client_id: g.client_id.clone(),
        sub: g.sub.clone(),
        scope: g.scope.clone(),
        grant_id: g.id,
        issued_at: Timestamp::from_millis(0),
        expires_at: g.expires_at,
        auth_time: None,
        sid: None,
    }
}

fn held(store: &MemoryStore) -> (usize, usize) {
    let counts = store.records().unwrap();
    (counts.held, counts.by_kind.iter().sum())
}

#[tokio::test]
async fn the_bound_counts_every_record_and_refuses_only_issuance() {
    let store = MemoryStore::bounded(6, Duration::from_secs(60));
    let g = grant(Timestamp::from_millis(3_600_000));
    let first = AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        grant_id: Some(g.id),
        ..access(0, Timestamp::from_millis(60_000))
    };
    store
        .insert_grant_tokens(&g, &first, Some(&refresh(&g, 1)))
        .await
        .unwrap();
    for i in 1..4 {
        let a = AccessTokenRecord {
            jkt: None,
            resources: Default::default(),
            grant_id: Some(g.id),
            ..access(i, Timestamp::from_millis(60_000))
        };
        let outcome = store
            .rotate_refresh_token(
                &hash_token(&format!("r{i}")),
                &a,
                &refresh(&g, u32::try_from(i).unwrap() + 1),
            )
            .await
            .unwrap();
        assert!(matches!(outcome, RotateOutcome::Rotated));
    }
    assert_eq!(held(&store), (6, 6));
    // Full: issuance of every kind is refused, and a refused rotation changes nothing.
    let full = |r: StoreResult<_>| matches!(r, Err(StoreError::Full { retry_after_secs: 60 }));
    assert!(full(
        store
            .insert_access_token(&access(9, Timestamp::from_millis(60_000)))
            .await
    ));
    let a = AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        grant_id: Some(g.id),
        ..access(9, Timestamp::from_millis(60_000))
    };
    assert!(full(
        store
            .rotate_refresh_token(&hash_token("r4"), &a, &refresh(&g, 5))
            .await
            .map(|_| ())
    ));
    assert_eq!(store.refresh.records.get(&hash_token("family")).unwrap().generation, 4);
    // A revocation is never refused; its tombstone may go past the bound.
    store
        .revoke_grant(&grant(Timestamp::from_millis(10)), Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(held(&store), (7, 7));
    // Sweeping the access tokens and the tombstone frees their room, and the grant's token
    // list keeps only what is live: its refresh family.
    let now = Timestamp::from_millis(61_000);
    assert_eq!(
        store.delete_expired(RecordKind::AccessTokens, now, 100).await.unwrap(),
        4
    );
    assert_eq!(store.delete_expired(RecordKind::Grants, now, 100).await.unwrap(), 1);
    assert_eq!(held(&store), (2, 2));
    assert_eq!(*store.grant_tokens.get(&g.id).unwrap(), vec![hash_token("family")]);
    store
        .insert_access_token(&access(10, now.plus(Duration::from_secs(60))))
        .await
        .unwrap();
    assert_eq!(store.purge_grant_tokens(&g.id, 10).await.unwrap().len(), 1);
    assert_eq!(held(&store), (2, 2), "the purge gave the family's room back");
}

#[tokio::test]
async fn an_expired_grant_takes_its_token_index_with_it() {
    let store = MemoryStore::new();
    let grant = GrantRecord {
        resources: Default::default(),
        id: generate_grant_id(),
        client_id: Arc::from("c"),
        sub: Arc::from("u"),
        scope: Scope::default(),
        created_at: Timestamp::from_millis(0),
        expires_at: Timestamp::from_millis(60_000),
        revoked_at: None,
        auth_time: None,
        sid: None,
    };
    let token = AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        grant_id: Some(grant.id),
        ..access(1, Timestamp::from_millis(30_000))
    };
    store.insert_grant_tokens(&grant, &token, None).await.unwrap();
    assert!(store.grant_tokens.contains_key(&grant.id));
    let now = Timestamp::from_millis(61_000);
    assert_eq!(
        store.delete_expired(RecordKind::AccessTokens, now, 10).await.unwrap(),
        1
    );
    assert_eq!(store.delete_expired(RecordKind::Grants, now, 10).await.unwrap(), 1);
    assert!(!store.grant_tokens.contains_key(&grant.id));
}
