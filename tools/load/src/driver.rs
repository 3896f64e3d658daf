//! The two ways of applying load.
//!
//! - Open loop (`--rate`): request i is due at `start + i / rate`, whatever happened to the ones
//!   before it, and its latency is measured from that intended time. A server stall therefore
//!   shows in the latency of every request that was due during it (no coordinated omission). The
//!   scheduler sleeps to just before the due time and then yields until it, so tokio's 1 ms timer
//!   granularity does not add up to a millisecond to every latency; its remaining lateness is
//!   reported as the send lag.
//! - Closed loop (`--concurrency`): that many workers each send the next request as soon as the
//!   previous one is answered: the saturation throughput.
//!
//! Both run `warmup + duration` and record only what started after the warm-up; both stop by
//! themselves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::Lag;

/// How long requests still in flight at the end may take to finish (beyond the request timeout
/// they are counted as timed out by the transport anyway).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub duration: Duration,
}

/// A unit of work: one request, or one flow of requests, started at (or due at) `start`, recorded
/// when `record`.
pub trait Job: Send + Sync + 'static {
    fn run(&self, start: Instant, record: bool) -> impl Future<Output = ()> + Send;
}

pub async fn open_loop<J: Job>(
    job: Arc<J>,
    rate: f64,
    window: Window,
    max_outstanding: usize,
    request_timeout: Duration,
    lag: &Lag,
) {
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + window.warmup;
    let end = measure_from + window.duration;
    let slots = Arc::new(Semaphore::new(max_outstanding.max(1)));
    let mut tasks = JoinSet::new();
    let mut i: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= end {
            break;
        }
        wait_until(due).await;
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let record = due >= measure_from;
        if record {
            lag.record(Instant::now().saturating_duration_since(due));
        }
        let job = Arc::clone(&job);
        tasks.spawn(async move {
            job.run(due, record).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
        i += 1;
    }
    drain(&mut tasks, end, request_timeout).await;
}

pub async fn closed_loop<J: Job>(job: Arc<J>, concurrency: usize, window: Window, request_timeout: Duration) {
    let start = Instant::now();
    let measure_from = start + window.warmup;
    let end = measure_from + window.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let job = Arc::clone(&job);
        tasks.spawn(async move {
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                job.run(now, now >= measure_from).await;
            }
        });
    }
    drain(&mut tasks, end, request_timeout).await;
}

/// Waits for the tasks still running after `end`, at most a request timeout and a grace; then
/// drops them.
async fn drain(tasks: &mut JoinSet<()>, end: Instant, request_timeout: Duration) {
    let deadline = end.max(Instant::now()) + request_timeout + DRAIN_GRACE;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {}
    if !tasks.is_empty() {
        eprintln!(
            "authplane-load: {} tasks still running at the end; dropped",
            tasks.len()
        );
        tasks.abort_all();
    }
}

/// Sleeps to shortly before `due`, then yields (letting other tasks run) until it.
async fn wait_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(1500);
    if let Some(early) = due.checked_sub(SPIN)
        && Instant::now() < early
    {
        tokio::time::sleep_until(early).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct Count(AtomicU64, AtomicU64);

    impl Job for Count {
        async fn run(&self, _start: Instant, record: bool) {
            if record {
                self.0.fetch_add(1, Ordering::Relaxed);
            } else {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    #[tokio::test]
    async fn open_loop_sends_at_the_rate_and_skips_the_warmup() {
        let job = Arc::new(Count(AtomicU64::new(0), AtomicU64::new(0)));
        let lag = Lag::new().unwrap();
        let window = Window {
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
        };
        open_loop(Arc::clone(&job), 500.0, window, 16, Duration::from_secs(1), &lag).await;
        assert_eq!(job.0.load(Ordering::Relaxed), 200);
        assert_eq!(job.1.load(Ordering::Relaxed), 50);
    }

    #[tokio::test]
    async fn closed_loop_stops_by_itself() {
        let job = Arc::new(Count(AtomicU64::new(0), AtomicU64::new(0)));
        let window = Window {
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(50),
        };
        closed_loop(Arc::clone(&job), 4, window, Duration::from_secs(1)).await;
        assert!(job.0.load(Ordering::Relaxed) > 0);
    }
}
