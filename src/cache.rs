//! The bounded caches in front of the store (moka), with hit/miss/eviction metrics.
//!
//! Correctness never rests on the cache: every hit is re-validated by the caller against `now`
//! (expiry) and the record's own state (revoked, rotated). Staleness is prevented by invalidation:
//! revocation, rotation and logout write the store first and then call [`RecordCache::invalidate`]
//! before they respond. A load that raced such an invalidation could otherwise re-insert the old
//! record; the cache's invalidation epoch closes that window (see [`RecordCache::get_or_load`]).
//! Unknown keys are cached as `None` (the negative cache), so a flood of garbage tokens is
//! answered here and never reaches the store.
//!
//! The TTL (`--cache-ttl`) is checked on every hit against the entry's own load time; moka is
//! given no `time_to_live`. moka removes expired entries in its maintenance, which runs inside
//! whichever request happens to trigger it and, with an eviction listener, keeps going for up to
//! 100 ms while expired entries remain: after a burst filled a cache, the mass expiry one TTL
//! later stalled requests by tens of milliseconds (BENCHMARKS.md, "The sweep stall"). A stale
//! entry is now a miss like any other; entries leave by size (a few per insert), by invalidation,
//! or when a lookup finds them stale.
//!
//! The TTL (`--cache-ttl`) is checked on every hit against the entry's own load time, and moka is
//! given no `time_to_live`: moka removes expired entries in its maintenance, which runs inside
//! whichever request happens to trigger it and, with an eviction listener, keeps going for up to
//! 100 ms while expired entries remain. After a burst filled a cache, the mass expiry 30 s later
//! stalled requests by tens of milliseconds (BENCHMARKS.md, the sweep stall). A stale entry is now
//! simply a miss; entries leave by size (a few per insert) or by invalidation.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::Counter;
use moka::notification::RemovalCause;
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
}

/// A bounded, concurrency-safe cache of store records keyed by credential hash (or grant id).
///
/// `S` hashes the keys: [`UniformKeys`] for keys no one can choose (hashes, random ids), the
/// standard SipHash ([`std::hash::RandomState`]) for keys a client picks (client ids, subjects).
pub struct RecordCache<K, V, S = UniformKeys> {
    name: &'static str,
    capacity: u64,
    /// Longest time an entry answers after its load.
    ttl: Duration,
    /// Keys are credential hashes or random ids, so their bytes are hashed by folding (see
    /// [`UniformKeys`]), not by SipHash.
    inner: moka::future::Cache<K, Cached<V>, S>,
    /// Bumped by every invalidation; a load that overlapped one does not keep its result.
    epoch: AtomicU64,
    stats: Arc<Stats>,
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

impl<K, V, S> RecordCache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Default + Send + Sync + 'static,
{
    pub fn new(name: &'static str, capacity: u64, ttl: Duration, metrics: &Metrics) -> Self {
        let stats = Arc::new(Stats {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            hits_metric: metrics.counter(telemetry::CACHE_HITS, &[("cache", name)]),
            misses_metric: metrics.counter(telemetry::CACHE_MISSES, &[("cache", name)]),
        });
        let by_size = metrics.counter(telemetry::CACHE_EVICTIONS, &[("cache", name), ("cause", "size")]);
        let by_ttl = metrics.counter(telemetry::CACHE_EVICTIONS, &[("cache", name), ("cause", "expired")]);
        let by_invalidation = metrics.counter(telemetry::CACHE_EVICTIONS, &[("cache", name), ("cause", "invalidated")]);
        metrics.gauge(telemetry::CACHE_ENTRIES, &[("cache", name)]).set(0.0);
        let listener_stats = Arc::clone(&stats);
        let inner = moka::future::Cache::builder()
            .name(name)
            .max_capacity(capacity)
            .eviction_listener(move |_k, v: Cached<V>, cause| {
                let counter = match cause {
                    RemovalCause::Size => &by_size,
                    // A stale entry found by a lookup is removed explicitly; report it as expired.
                    RemovalCause::Expired => &by_ttl,
                    RemovalCause::Explicit if v.is_stale(ttl) => &by_ttl,
                    RemovalCause::Explicit => &by_invalidation,
                    RemovalCause::Replaced => return,
                };
                counter.increment(1);
                listener_stats.evictions.fetch_add(1, Ordering::Relaxed);
            })
            .build_with_hasher(S::default());
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
    /// share one load. `None` (not in the store) is cached too. The key is borrowed (a `&str` for
    /// `String` keys): only a miss makes an owned one.
    pub async fn get_or_load<Q, F, E>(&self, key: &Q, load: F) -> Result<Option<Arc<V>>, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: Future<Output = Result<Option<V>, E>>,
        E: Unshare,
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
            match self.inner.get(key).await {
                Some(cached) if !cached.is_stale(self.ttl) => {
                    self.hit(&outcome);
                    return Ok(cached.value);
                }
                Some(_) => self.inner.invalidate(key).await,
                None => {}
            }
            let entry = self
                .inner
                .entry(key.to_owned())
                .or_try_insert_with(async { load.await.map(|r| Cached::new(r.map(Arc::new))) })
                .await
                .map_err(E::unshare)?;
            if entry.is_fresh() {
                outcome.record("outcome", "miss");
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                self.stats.misses_metric.increment(1);
                if self.epoch.load(Ordering::SeqCst) != epoch {
                    self.inner.invalidate(key).await;
                }
            } else {
                // Another request's load, shared.
                self.hit(&outcome);
            }
            Ok(entry.into_value().value)
        }
        .instrument(span)
        .await
    }

    fn hit(&self, span: &tracing::Span) {
        span.record("outcome", "hit");
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        self.stats.hits_metric.increment(1);
    }

    /// Write-through after the store accepted a new record, so the first use is a hit.
    pub async fn insert(&self, key: K, value: V) {
        self.inner.insert(key, Cached::new(Some(Arc::new(value)))).await;
    }

    /// Drops a key after its record changed in the store. Returns once no lookup on this node can
    /// be answered with the old record.
    pub async fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate(key).await;
    }

    /// Drops everything (used when cross-node invalidation messages may have been lost).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Applies pending evictions now (moka does it lazily); for tests and the health report.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }

    pub fn report(&self) -> CacheReport {
        let hits = self.stats.hits.load(Ordering::Relaxed);
        let misses = self.stats.misses.load(Ordering::Relaxed);
        let total = hits + misses;
        CacheReport {
            entries: self.inner.entry_count(),
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

/// moka shares a failed load's error among the waiters as an `Arc`; this turns it back into an
/// owned error of the same class (unavailable stays unavailable, so the client still gets 503).
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
        let load = c.get_or_load(&1, async {
            let _ = started_tx.send(());
            let _ = rx.await;
            Ok::<_, StoreError>(Some("old"))
        });
        let revoke = async {
            let _ = started_rx.await;
            c.invalidate(&1).await;
            let _ = tx.send(());
        };
        let (loaded, ()) = tokio::join!(load, revoke);
        assert_eq!(
            loaded.unwrap().as_deref(),
            Some(&"old"),
            "the racing request itself may see it"
        );
        let next = c
            .get_or_load(&1, async { Ok::<_, StoreError>(Some("new")) })
            .await
            .unwrap();
        assert_eq!(next.as_deref(), Some(&"new"), "but the cache did not keep it");
    }

    #[tokio::test]
    async fn hits_misses_and_negative_entries() {
        let c = cache();
        assert!(
            c.get_or_load(&7, async { Ok::<_, StoreError>(None) })
                .await
                .unwrap()
                .is_none()
        );
        let again = c
            .get_or_load(&7, async { Ok::<_, StoreError>(Some("late")) })
            .await
            .unwrap();
        assert!(again.is_none(), "the negative entry answers");
        c.insert(7, "set").await;
        assert_eq!(
            c.get_or_load(&7, async { Ok::<_, StoreError>(None) })
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
            .get_or_load(&1, async { Ok::<_, StoreError>(Some("old")) })
            .await
            .unwrap();
        assert_eq!(first.as_deref(), Some(&"old"));
        let second = c
            .get_or_load(&1, async { Ok::<_, StoreError>(Some("new")) })
            .await
            .unwrap();
        assert_eq!(second.as_deref(), Some(&"new"), "the stale entry was not served");
        c.run_pending_tasks().await;
        let r = c.report();
        assert_eq!((r.hits, r.misses, r.evictions), (0, 2, 1));
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached_and_keep_their_class() {
        let c = cache();
        let err = c
            .get_or_load(&3, async {
                Err::<Option<&str>, _>(StoreError::Unavailable(anyhow::anyhow!("down")))
            })
            .await;
        assert!(matches!(err, Err(StoreError::Unavailable(_))));
        let ok = c
            .get_or_load(&3, async { Ok::<_, StoreError>(Some("up")) })
            .await
            .unwrap();
        assert_eq!(ok.as_deref(), Some(&"up"));
    }
}
