//! The background sweeper: every `--sweep-interval` (with up to 10% jitter, so that nodes sharing
//! a store do not sweep in lockstep) it purges the grants whose revocation is pending, then deletes
//! expired records kind by kind in batches of `--sweep-batch`, resting between batches as long as
//! the batch took, so a large backlog never takes more than half of the store from request paths.
//! On cancellation it flushes the pending revocations and stops.
//! Tests call [`Sweeper::sweep_once`] directly instead of waiting for a tick.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::service::TokenService;
use crate::store::{RecordKind, Store};
use crate::telemetry::{self, Metrics};

/// What one run removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepStats {
    pub removed: BTreeMap<&'static str, usize>,
    /// Revoked grants whose tokens were purged.
    pub grants_purged: usize,
    pub duration_ms: u64,
}

impl SweepStats {
    pub fn removed(&self, kind: RecordKind) -> usize {
        self.removed.get(kind.as_str()).copied().unwrap_or(0)
    }
}

/// Shared with `/debug/health`.
pub struct SweeperStatus {
    interval: Duration,
    runs: AtomicU64,
    /// Publishes the run count, so tests (and anything else) can await a run instead of sleeping.
    runs_tx: watch::Sender<u64>,
    last: Mutex<Option<(Timestamp, SweepStats)>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweeperReport {
    pub interval_ms: u64,
    pub runs: u64,
    /// RFC 3339.
    pub last_run_at: Option<String>,
    pub last_duration_ms: Option<u64>,
    pub last_removed: BTreeMap<&'static str, usize>,
}

impl SweeperStatus {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            runs: AtomicU64::new(0),
            runs_tx: watch::Sender::new(0),
            last: Mutex::new(None),
        }
    }

    /// A receiver of the number of completed runs.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.runs_tx.subscribe()
    }

    pub fn report(&self) -> SweeperReport {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let at = last.as_ref().map(|(t, _)| {
            let st = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(t.millis()).unwrap_or(0));
            humantime::format_rfc3339_millis(st).to_string()
        });
        SweeperReport {
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            runs: self.runs.load(Ordering::Relaxed),
            last_run_at: at,
            last_duration_ms: last.as_ref().map(|(_, s)| s.duration_ms),
            last_removed: last.map(|(_, s)| s.removed).unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
pub struct Sweeper {
    store: Arc<dyn Store>,
    tokens: TokenService,
    clock: Clock,
    interval: Duration,
    batch: usize,
    status: Arc<SweeperStatus>,
    duration: Histogram,
    removed: Vec<(RecordKind, Counter)>,
    last_run: Gauge,
}

impl Sweeper {
    pub fn new(
        store: Arc<dyn Store>,
        tokens: TokenService,
        clock: Clock,
        interval: Duration,
        batch: usize,
        metrics: &Metrics,
    ) -> Self {
        let removed = RecordKind::ALL
            .iter()
            .map(|k| {
                let c = metrics.counter(telemetry::SWEEP_REMOVED, &[("kind", k.as_str())]);
                c.absolute(0);
                (*k, c)
            })
            .collect();
        let last_run = metrics.gauge(telemetry::SWEEP_LAST_RUN, &[]);
        last_run.set(0.0);
        Self {
            store,
            tokens,
            clock,
            interval,
            batch: batch.max(1),
            status: Arc::new(SweeperStatus::new(interval)),
            duration: metrics.histogram(telemetry::SWEEP_DURATION, &[]),
            removed,
            last_run,
        }
    }

    pub fn status(&self) -> Arc<SweeperStatus> {
        Arc::clone(&self.status)
    }

    /// Runs until `cancel` fires, then flushes pending revocation work and returns.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(interval = ?self.interval, batch = self.batch, "sweeper started");
        loop {
            let jitter = self.interval.mul_f64(rand::thread_rng().gen_range(0.0..0.1));
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.interval + jitter) => {}
            }
            let now = self.clock.now();
            tokio::select! {
                () = cancel.cancelled() => break,
                res = self.sweep_once(now) => match res {
                    Ok(stats) => tracing::debug!(?stats, "sweep done"),
                    Err(e) => tracing::warn!(error = ?e, "sweep failed; retrying next interval"),
                },
            }
        }
        let flushed = match self.tokens.purge_pending(self.batch, self.clock.now()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = ?e, "flushing pending revocations failed");
                0
            }
        };
        tracing::info!(flushed, "flushed pending revocations");
        tracing::info!("sweeper stopped");
    }

    /// One full sweep at `now`: purge pending revocations, then delete what expired before `now`.
    pub async fn sweep_once(&self, now: Timestamp) -> Result<SweepStats, ApiError> {
        let started = Instant::now();
        let mut stats = SweepStats {
            grants_purged: self.tokens.purge_pending(self.batch, now).await?,
            ..Default::default()
        };
        for (kind, counter) in &self.removed {
            let mut total = 0;
            loop {
                let batch_started = Instant::now();
                let n = self.store.delete_expired(*kind, now, self.batch).await?;
                total += n;
                counter.increment(n as u64);
                if n < self.batch {
                    break;
                }
                // Pace a backlog: rest as long as the batch took, so the sweeper uses at most half
                // of one connection and the store keeps room for the hot paths (a yield is all a
                // microsecond-long memory batch costs).
                tokio::time::sleep(batch_started.elapsed()).await;
            }
            stats.removed.insert(kind.as_str(), total);
        }
        stats.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.duration.record(started.elapsed().as_secs_f64());
        // When the run finished, by the same clock as `now`.
        self.last_run
            .set(now.millis() as f64 / 1000.0 + started.elapsed().as_secs_f64());
        *self.status.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, stats.clone()));
        let runs = self.status.runs.fetch_add(1, Ordering::Relaxed) + 1;
        self.status.runs_tx.send_replace(runs);
        Ok(stats)
    }
}
