//! The bounded caches in front of the store, with hit/miss/eviction metrics.
//!
//! Correctness never rests on the cache: every hit is re-validated by the caller against `now`
//! (expiry) and the record's own state (revoked, rotated). Staleness is prevented by invalidation:
//! revocation, rotation and logout write the store first and then call [`RecordCache::invalidate`]
//! before they respond. A load that raced such an invalidation could otherwise re-insert the old
//! record; the cache's invalidation epoch closes that window (see [`RecordCache::get_or_load`]).
//! Unknown keys are cached as `None` (the negative cache), so a flood of garbage tokens is
//! answered here and never reaches the store.
//!
//! The cache is quick_cache's (S3-FIFO over sharded hash tables): a hit is a read lock on one
//! shard and a table lookup, with no deferred maintenance. It replaced moka here (issue 15): a
//! moka hit records the read in a buffer that requests then drain into its LRU deques and
//! frequency sketch, which cost about 0.8 µs of every lookup on the hot paths (two to four per
//! request), and 382 bytes of bookkeeping per entry (BENCHMARKS.md).
//!
//! The TTL (`--cache-ttl`) is checked on every hit against the entry's own load time: a stale
//! entry is a miss (removed, counted as expired). Entries leave by size (a few per insert, as
//! they come in), by invalidation, or when a lookup finds them stale; nothing runs later in bulk,
//! so a mass expiry one TTL after a burst stalls nothing (BENCHMARKS.md, the sweep stall).

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::Counter;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Lifecycle, OptionsBuilder, UnitWeighter};
use serde::Serialize;
use tracing::Instrument;

use crate::domain::UniformKeys;
use crate::store::StoreError;
use crate::telemetry::{self, Metrics};

/// Hit/miss/eviction counts, kept both as Prometheus counters and as atomics that
/// `/debug/health` can read.
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    hits_metric: Counter,
    misses_metric: Counter,
    by_size: Counter,
    by_ttl: Counter,
    by_invalidation: Counter,
}

impl Stats {
    fn evicted(&self, counter: &Counter) {
        counter.increment(1);
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the entries the cache drops for room.
#[derive(Clone)]
struct SizeEvictions(Arc<Stats>);

impl<K, V> Lifecycle<K, V> for SizeEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _key: K, _value: V) {
        self.0.evicted(&self.0.by_size);
    }
}

/// A bounded, concurrency-safe cache of store records keyed by credential hash (or grant id).
///
/// `S` hashes the keys: [`UniformKeys`] for keys no one can choose (hashes, random ids), the
/// standard SipHash ([`std::hash::RandomState`]) for keys a client picks (client ids, subjects).
/// `E` is the loads' error, shared among the requests waiting on one load.
pub struct RecordCache<K, V, S = UniformKeys, E = StoreError> {
    name: &'static str,
    capacity: u64,
    /// Longest time an entry answers after its load.
    ttl: Duration,
    inner: Cache<K, Slot<V, E>, UnitWeighter, S, SizeEvictions>,
    /// Bumped by every invalidation; a load that overlapped one does not keep its result.
    epoch: AtomicU64,
    stats: Arc<Stats>,
}

/// What a key holds: a loaded answer, or (for the moment it takes to hand it to the requests
/// that waited on the same load) a failed load's error.
enum Slot<V, E> {
    Loaded(Cached<V>),
    Failed(Arc<E>),
}

impl<V, E> Clone for Slot<V, E> {
    fn clone(&self) -> Self {
        match self {
            Self::Loaded(c) => Self::Loaded(c.clone()),
            Self::Failed(e) => Self::Failed(Arc::clone(e)),
        }
    }
}

/// A cached answer (`None`: not in the store) and when it was loaded.
struct Cached<V> {
    value: Option<Arc<V>>,
    loaded_at: Instant,
}

impl<V> Clone for Cached<V> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            loaded_at: self.loaded_at,
        }
    }
}

impl<V> Cached<V> {
    fn new(value: Option<Arc<V>>) -> Self {
        Self {
            value,
            loaded_at: Instant::now(),
        }
    }

    fn is_stale(&self, ttl: Duration) -> bool {
        self.loaded_at.elapsed() >= ttl
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CacheReport {
    pub entries: u64,
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub evictions: u64,
}

impl<K, V, S, E> RecordCache<K, V, S, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Default + Send + Sync + 'static,
    E: Unshare,
{
    pub fn new(name: &'static str, capacity: u64, ttl: Duration, metrics: &Metrics) -> Self {
        let stats = Arc::new(Stats {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            hits_metric: metrics.counter(telemetry::CACHE_HITS, &[("cache", name)]),
            misses_metric: metrics.counter(telemetry::CACHE_MISSES, &[("cache", name)]),
            by_size: metrics.counter(telemetry::CACHE_EVICTIONS, &[("cache", name), ("cause", "size")]),
            by_ttl: metrics.counter(telemetry::CACHE_EVICTIONS, &[("cache", name), ("cause", "expired")]),
            by_invalidation: metrics.counter(telemetry::CACHE_EVICTIONS, &[("cache", name), ("cause", "invalidated")]),
        });
        metrics.gauge(telemetry::CACHE_ENTRIES, &[("cache", name)]).set(0.0);
        let capacity = capacity.max(1);
        // Tables grow as entries come (nothing is allocated up front); shards are sized so that
        // their capacities add up to the cache's.
        #[allow(
            clippy::expect_used,
            reason = "build() fails only when one of the two sizes is not set"
        )]
        let options = OptionsBuilder::new()
            .estimated_items_capacity(usize::try_from(capacity).unwrap_or(usize::MAX))
            .weight_capacity(capacity)
            .shards(shards_for(capacity))
            .build()
            .expect("a capacity and an item estimate are all the options need");
        let inner = Cache::with_options(options, UnitWeighter, S::default(), SizeEvictions(Arc::clone(&stats)));
        Self {
            name,
            capacity,
            ttl,
            inner,
            epoch: AtomicU64::new(0),
            stats,
        }
    }

    /// Returns the cached record, or loads it with `load` on a miss. Concurrent misses on one key
    /// share one load (and its error). `None` (not in the store) is cached too. The key is
    /// borrowed (a `&str` for `String` keys): only a miss makes an owned one. `load` is called on
    /// a miss only: a store method's future (boxed by `async_trait`) made for every lookup would
    /// cost an allocation on every hit.
    pub async fn get_or_load<Q, L, F>(&self, key: &Q, load: L) -> Result<Option<Arc<V>>, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        L: FnOnce() -> F,
        F: Future<Output = Result<Option<V>, E>>,
    {
        let span = tracing::debug_span!("cache.lookup", cache = self.name, outcome = tracing::field::Empty);
        // The outcome goes to this span itself: `Span::current()` would look the current span up
        // and clone and close it on every lookup, also when this span is disabled (then it
        // finds the request's span, which has no such field).
        let outcome = span.clone();
        async {
            // Read before the store is: if an invalidation happens after this point, the loaded
            // record may predate it, and the check below drops it from the cache.
            let epoch = self.epoch.load(Ordering::SeqCst);
            // One lookup: a value (cached, or another request's load, shared) or the guard that
            // makes this request the one to load. A stale value is dropped and looked up again.
            let mut found = self.inner.get_value_or_guard_async(key).await;
            if let Ok(Slot::Loaded(cached)) = &found
                && cached.is_stale(self.ttl)
            {
                self.remove(key);
                found = self.inner.get_value_or_guard_async(key).await;
            }
            let guard = match found {
                Ok(Slot::Loaded(cached)) => {
                    self.hit(&outcome);
                    return Ok(cached.value);
                }
                // Another request's load failed just now: its error is this one's too.
                Ok(Slot::Failed(e)) => return Err(E::unshare(e)),
                Err(guard) => guard,
            };
            match load().await {
                Ok(record) => {
                    let cached = Cached::new(record.map(Arc::new));
                    let value = cached.value.clone();
                    // Refused when an invalidation removed the placeholder meanwhile: not kept.
                    let _ = guard.insert(Slot::Loaded(cached));
                    outcome.record("outcome", "miss");
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    self.stats.misses_metric.increment(1);
                    if self.epoch.load(Ordering::SeqCst) != epoch {
                        self.remove(key);
                    }
                    Ok(value)
                }
                Err(e) => {
                    // The waiters get the error (they would only repeat a failing load, one
                    // after another); then the key is free for the next request to try again.
                    let e = Arc::new(e);
                    let _ = guard.insert(Slot::Failed(Arc::clone(&e)));
                    self.inner.remove_if(key, |slot| matches!(slot, Slot::Failed(_)));
                    Err(E::unshare(e))
                }
            }
        }
        .instrument(span)
        .await
    }

    fn hit(&self, span: &tracing::Span) {
        span.record("outcome", "hit");
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        self.stats.hits_metric.increment(1);
    }

    /// Removes a key, counting an entry that was there as expired or invalidated.
    fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        if let Some((_, Slot::Loaded(cached))) = self.inner.remove(key) {
            let cause = match cached.is_stale(self.ttl) {
                true => &self.stats.by_ttl,
                false => &self.stats.by_invalidation,
            };
            self.stats.evicted(cause);
        }
    }

    /// Write-through after the store accepted a new record, so the first use is a hit.
    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, Slot::Loaded(Cached::new(Some(Arc::new(value)))));
    }

    /// Drops a key after its record changed in the store. Returns once no lookup on this node can
    /// be answered with the old record.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.remove(key);
    }

    /// Drops everything (used when cross-node invalidation messages may have been lost).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for _ in self.inner.drain() {
            self.stats.evicted(&self.stats.by_invalidation);
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.len() as u64
    }

    pub fn report(&self) -> CacheReport {
        let hits = self.stats.hits.load(Ordering::Relaxed);
        let misses = self.stats.misses.load(Ordering::Relaxed);
        let total = hits + misses;
        CacheReport {
            entries: self.entry_count(),
            capacity: self.capacity,
            hits,
            misses,
            hit_rate: if total == 0 { 0.0 } else { hits as f64 / total as f64 },
            evictions: self.stats.evictions.load(Ordering::Relaxed),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Shards for a cache of `capacity` entries: a power of two (up to 16) that divides it, so that
/// the cache never holds more than its capacity; small caches get one.
fn shards_for(capacity: u64) -> usize {
    let mut shards = 16u64;
    while shards > 1 && (capacity % shards != 0 || capacity / shards < 32) {
        shards /= 2;
    }
    shards as usize
}

/// A failed load's error is shared among the requests that waited on it as an `Arc`; this turns
/// it back into an owned error of the same class (unavailable stays unavailable, so the client still gets 503).
pub trait Unshare: Send + Sync + 'static + Sized {
    fn unshare(shared: Arc<Self>) -> Self;
}

impl Unshare for StoreError {
    fn unshare(e: Arc<StoreError>) -> StoreError {
        match &*e {
            StoreError::Unavailable(_) => StoreError::Unavailable(anyhow::Error::new(e)),
            StoreError::Full { retry_after_secs } => StoreError::Full {
                retry_after_secs: *retry_after_secs,
            },
            StoreError::Internal(_) => StoreError::Internal(anyhow::Error::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> RecordCache<u32, &'static str> {
        RecordCache::new("test", 100, Duration::from_secs(60), &Metrics::new())
    }

    #[tokio::test]
    async fn a_load_that_overlaps_an_invalidation_is_not_kept() {
        let c = cache();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        // The loader read the old record, then stalls; meanwhile the record is revoked.
        let load = c.get_or_load(&1, || async {
            let _ = started_tx.send(());
            let _ = rx.await;
            Ok::<_, StoreError>(Some("old"))
        });
        let revoke = async {
            let _ = started_rx.await;
            c.invalidate(&1);
            let _ = tx.send(());
        };
        let (loaded, ()) = tokio::join!(load, revoke);
        assert_eq!(
            loaded.unwrap().as_deref(),
            Some(&"old"),
            "the racing request itself may see it"
        );
        let next = c
            .get_or_load(&1, || async { Ok::<_, StoreError>(Some("new")) })
            .await
            .unwrap();
        assert_eq!(next.as_deref(), Some(&"new"), "but the cache did not keep it");
    }

    #[tokio::test]
    async fn hits_misses_and_negative_entries() {
        let c = cache();
        assert!(
            c.get_or_load(&7, || async { Ok::<_, StoreError>(None) })
                .await
                .unwrap()
                .is_none()
        );
        let again = c
            .get_or_load(&7, || async { Ok::<_, StoreError>(Some("late")) })
            .await
            .unwrap();
        assert!(again.is_none(), "the negative entry answers");
        c.insert(7, "set");
        assert_eq!(
            c.get_or_load(&7, || async { Ok::<_, StoreError>(None) })
                .await
                .unwrap()
                .as_deref(),
            Some(&"set")
        );
        let r = c.report();
        assert_eq!((r.hits, r.misses), (2, 1));
    }

    #[tokio::test]
    async fn an_entry_older_than_the_ttl_is_a_miss_and_counts_as_expired() {
        // A zero TTL makes every entry stale as soon as it is stored: no waiting needed.
        let c: RecordCache<u32, &'static str> = RecordCache::new("test", 100, Duration::ZERO, &Metrics::new());
        let first = c
            .get_or_load(&1, || async { Ok::<_, StoreError>(Some("old")) })
            .await
            .unwrap();
        assert_eq!(first.as_deref(), Some(&"old"));
        let second = c
            .get_or_load(&1, || async { Ok::<_, StoreError>(Some("new")) })
            .await
            .unwrap();
        assert_eq!(second.as_deref(), Some(&"new"), "the stale entry was not served");
        let r = c.report();
        assert_eq!((r.hits, r.misses, r.evictions), (0, 2, 1));
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached_and_keep_their_class() {
        let c = cache();
        let err = c
            .get_or_load(&3, || async {
                Err::<Option<&str>, _>(StoreError::Unavailable(anyhow::anyhow!("down")))
            })
            .await;
        assert!(matches!(err, Err(StoreError::Unavailable(_))));
        assert_loads_again(&c, 3).await;
    }

    /// After a failed load, the next lookup of `key` loads (and gets) the record.
    async fn assert_loads_again(c: &RecordCache<u32, &'static str>, key: u32) {
        let ok = c
            .get_or_load(&key, || async { Ok::<_, StoreError>(Some("up")) })
            .await
            .unwrap();
        assert_eq!(ok.as_deref(), Some(&"up"));
    }

    #[tokio::test]
    async fn waiters_share_a_failed_load_and_the_next_request_loads_again() {
        let c = cache();
        let loads = AtomicU64::new(0);
        let (release, gate) = tokio::sync::watch::channel(false);
        let load = || {
            let mut gate = gate.clone();
            let loads = &loads;
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                Err::<Option<&str>, _>(StoreError::Unavailable(anyhow::anyhow!("down")))
            }
        };
        let lookups = futures::future::join_all((0..5).map(|_| c.get_or_load(&9, load)));
        let open = async {
            // `join!` polls the lookups first: the first starts the load, the other four join it
            // as waiters in that same first poll.
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            let _ = release.send(true);
        };
        let (results, ()) = tokio::join!(lookups, open);
        assert!(results.iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for five concurrent misses");
        assert_eq!(c.entry_count(), 0, "the failure is not kept");
        assert_loads_again(&c, 9).await;
    }

    #[tokio::test]
    async fn a_cache_never_holds_more_than_its_capacity_and_counts_what_it_drops() {
        for capacity in [10u64, 100, 1000, 4096, 100_000] {
            let metrics = Metrics::new();
            let c: RecordCache<u64, u64> = RecordCache::new("bounded", capacity, Duration::from_secs(60), &metrics);
            let inserted = capacity * 3;
            for k in 0..inserted {
                c.insert(k, k);
            }
            let r = c.report();
            assert!(r.entries <= capacity, "{} entries in a cache of {capacity}", r.entries);
            // S3-FIFO keeps entries seen once in its small queue: a scan of new keys does not
            // push out what is in use, so the cache need not be full after one.
            assert!(r.entries > 0);
            assert_eq!(
                r.entries + r.evictions,
                inserted,
                "every entry dropped for room is counted"
            );
            let text = metrics.render();
            assert!(text.contains(&format!(
                r#"authplane_cache_evictions_total{{cache="bounded",cause="size"}} {}"#,
                r.evictions
            )));
        }
    }

    #[tokio::test]
    async fn invalidations_are_counted_apart_from_expiry() {
        let c = cache();
        c.insert(1, "a");
        c.insert(2, "b");
        c.invalidate(&1);
        c.invalidate(&1);
        assert_eq!(c.report().evictions, 1, "only an entry that was there counts");
        c.invalidate_all();
        assert_eq!((c.report().entries, c.report().evictions), (0, 2));
    }
}
