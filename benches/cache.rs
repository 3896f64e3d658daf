//! `RecordCache` (quick_cache) hit and miss with 100k entries, as the access-token cache holds them.
//! `cargo bench --bench cache`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authplane::cache::RecordCache;
use authplane::crypto;
use authplane::domain::{GrantId, Scope, Timestamp, TokenHash};
use authplane::store::{AccessTokenRecord, StoreError};
use authplane::telemetry::Metrics;
use criterion::{Criterion, black_box};

mod common;

use common::{bench_async, bench_async_with};

const ENTRIES: u64 = 100_000;

fn record(hash: TokenHash, now: Timestamp) -> AccessTokenRecord {
    AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        hash,
        client_id: authplane_testkit::APP.into(),
        sub: Some("u-alice".into()),
        scope: Scope::parse("openid profile email").unwrap(),
        grant_id: Some(GrantId([7; 16])),
        issued_at: now,
        expires_at: now.plus(Duration::from_secs(900)),
        revoked_at: None,
    }
}

fn key(i: u64) -> TokenHash {
    crypto::hash_token(&format!("token-{i}"))
}

fn cache_benches(c: &mut Criterion) {
    let rt = common::runtime();
    let metrics = Metrics::new();
    let now = Timestamp::from_millis(1_700_000_000_000);
    // The server's default capacity and TTL.
    let cache =
        RecordCache::<TokenHash, AccessTokenRecord>::new("access_tokens", ENTRIES, Duration::from_secs(30), &metrics);
    let keys: Vec<TokenHash> = (0..ENTRIES).map(key).collect();
    for k in &keys {
        cache.insert(*k, record(*k, now));
    }
    assert!(cache.entry_count() >= ENTRIES * 99 / 100, "{}", cache.entry_count());

    let mut g = c.benchmark_group("cache_100k");
    // A hit: the key is cached; the loader (a store call) is never polled. Keys are visited in a
    // scattered order, so the CPU caches do not hold the whole working set.
    let mut i = 0usize;
    bench_async(&mut g, &rt, "hit", async || {
        i = (i + 7919) % keys.len();
        let hit = cache
            .get_or_load(&keys[i], || async { Ok::<_, StoreError>(None) })
            .await;
        black_box(hit.unwrap().is_some());
    });
    // A miss: a key never seen; the loader answers at once (as an in-memory store would) with
    // absent, which is cached (the negative cache), so the cache stays full and evicts.
    let next = AtomicU64::new(ENTRIES);
    let new_key = || key(next.fetch_add(1, Ordering::Relaxed));
    bench_async_with(&mut g, &rt, "miss_negative", new_key, async |k| {
        black_box(
            cache
                .get_or_load(&k, || async { Ok::<_, StoreError>(None) })
                .await
                .unwrap(),
        );
    });
    // A miss that loads a record (a token issued on another node, say).
    bench_async_with(&mut g, &rt, "miss_load_record", new_key, async |k| {
        black_box(
            cache
                .get_or_load(&k, || async move { Ok::<_, StoreError>(Some(record(k, now))) })
                .await
                .unwrap(),
        );
    });
    // Write-through insert of a new record (every token issued).
    bench_async_with(
        &mut g,
        &rt,
        "insert",
        || record(new_key(), now),
        async |r| cache.insert(r.hash, r),
    );
    // Invalidation of a cached key (revocation, rotation, logout).
    bench_async(&mut g, &rt, "invalidate", async || {
        i = (i + 7919) % keys.len();
        cache.invalidate(&keys[i]);
    });
    g.finish();
}

common::bench_main!(30, cache_benches);
