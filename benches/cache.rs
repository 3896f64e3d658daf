//! `RecordCache` (moka) hit and miss with 100k entries, as the access-token cache holds them.
//! `cargo bench --bench cache`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authplane::cache::RecordCache;
use authplane::crypto;
use authplane::domain::{GrantId, Scope, Timestamp, TokenHash};
use authplane::store::{AccessTokenRecord, StoreError};
use authplane::telemetry::Metrics;
use criterion::{Criterion, black_box, criterion_group, criterion_main};

const ENTRIES: u64 = 100_000;

fn record(hash: TokenHash, now: Timestamp) -> AccessTokenRecord {
    AccessTokenRecord {
        hash,
        client_id: "demo-app".to_owned(),
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = Metrics::new();
    let now = Timestamp::from_millis(1_700_000_000_000);
    // The server's default capacity and TTL.
    let cache =
        RecordCache::<TokenHash, AccessTokenRecord>::new("access_tokens", ENTRIES, Duration::from_secs(30), &metrics);
    let keys: Vec<TokenHash> = (0..ENTRIES).map(key).collect();
    rt.block_on(async {
        for k in &keys {
            cache.insert(*k, record(*k, now)).await;
        }
        cache.run_pending_tasks().await;
    });
    assert!(cache.entry_count() >= ENTRIES * 99 / 100, "{}", cache.entry_count());

    let mut g = c.benchmark_group("cache_100k");
    // A hit: the key is cached; the loader (a store call) is never polled. Keys are visited in a
    // scattered order, so the CPU caches do not hold the whole working set.
    let mut i = 0usize;
    g.bench_function("hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    i = (i + 7919) % keys.len();
                    let hit = cache.get_or_load(&keys[i], async { Ok::<_, StoreError>(None) }).await;
                    black_box(hit.unwrap().is_some());
                }
                start.elapsed()
            })
        })
    });
    // A miss: a key never seen; the loader answers at once (as an in-memory store would) with
    // absent, which is cached (the negative cache), so the cache stays full and evicts.
    let next = AtomicU64::new(ENTRIES);
    g.bench_function("miss_negative", |b| {
        b.iter_custom(|iters| {
            let ks: Vec<TokenHash> = (0..iters).map(|_| key(next.fetch_add(1, Ordering::Relaxed))).collect();
            rt.block_on(async {
                let start = Instant::now();
                for k in &ks {
                    black_box(cache.get_or_load(k, async { Ok::<_, StoreError>(None) }).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    // A miss that loads a record (a token issued on another node, say).
    g.bench_function("miss_load_record", |b| {
        b.iter_custom(|iters| {
            let ks: Vec<TokenHash> = (0..iters).map(|_| key(next.fetch_add(1, Ordering::Relaxed))).collect();
            rt.block_on(async {
                let start = Instant::now();
                for k in &ks {
                    let k = *k;
                    black_box(
                        cache
                            .get_or_load(&k, async move { Ok::<_, StoreError>(Some(record(k, now))) })
                            .await
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    // Write-through insert of a new record (every token issued).
    g.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let recs: Vec<AccessTokenRecord> = (0..iters)
                .map(|_| {
                    let k = key(next.fetch_add(1, Ordering::Relaxed));
                    record(k, now)
                })
                .collect();
            rt.block_on(async {
                let start = Instant::now();
                for r in recs {
                    cache.insert(r.hash, r).await;
                }
                start.elapsed()
            })
        })
    });
    // Invalidation of a cached key (revocation, rotation, logout).
    g.bench_function("invalidate", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    i = (i + 7919) % keys.len();
                    cache.invalidate(&keys[i]).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = cache_benches
}
criterion_main!(benches);
