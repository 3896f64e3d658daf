//! The delay-based half of admission control: [`Controller`] turns the queue delay that requests
//! saw into the route's concurrency limit (CoDel's idea: Nichols and Jacobson, "Controlling Queue
//! Delay", 2012).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use metrics::Gauge;

/// Queue delay above which a queue counts as standing (CoDel's target) ...
const TARGET: Duration = Duration::from_millis(5);
/// ... when it stays above it for this long (CoDel's interval: about a round trip's worth).
const INTERVAL: Duration = Duration::from_millis(100);
/// An interval with fewer finished requests proves nothing either way: one slow request (a
/// connection being opened, a failover) must not cut an idle endpoint's limit.
const MIN_SAMPLES: u64 = 20;
/// The limit never drops below this (or `--max-inflight` if that is lower): enough to keep a
/// store pool of the default size busy.
const MIN_LIMIT: usize = 16;

/// The delay-based half of admission control. Each [`INTERVAL`], the smallest queue delay among
/// the requests that finished in it (waiting for a slot here plus waiting for a store connection,
/// [`super::queue_delay`]) tells a good queue from a bad one: a burst that drains leaves some request
/// with almost no wait, a standing queue delays every one. When even the smallest exceeded
/// [`TARGET`] (over at least [`MIN_SAMPLES`] requests), the endpoint is overloaded and its
/// concurrency limit drops to what Little's law says keeps the queue near the target (the
/// interval's throughput times its mean service time plus the target), at most three quarters of
/// the old limit and at least [`MIN_LIMIT`]. While the limit is below `--max-inflight`, a request
/// that finds it reached is shed at once, never queued; each interval without a standing queue
/// raises it by an eighth, and an endpoint that saw no traffic for a while gets it back at once
/// (doubling per idle interval). Service time does not count as delay, only waiting, so a slow but
/// idle store (a remote database) does not look overloaded.
pub(super) struct Controller {
    epoch: Instant,
    max_inflight: usize,
    floor: usize,
    limit: AtomicUsize,
    overloaded: AtomicBool,
    /// Start of the current interval, in microseconds since `epoch`.
    interval_start: AtomicU64,
    /// Smallest queue delay seen in the current interval, in microseconds.
    interval_min: AtomicU64,
    /// Requests finished in the current interval, and their service time (latency minus queue
    /// delay) in microseconds.
    interval_done: AtomicU64,
    interval_service: AtomicU64,
    limit_metric: Gauge,
}

/// What one interval saw.
#[derive(Clone, Copy, Debug)]
struct Interval {
    length: Duration,
    min_queued: Duration,
    done: u64,
    service: Duration,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Controller {
    pub(super) fn new(max_inflight: usize, limit_metric: Gauge) -> Self {
        Self {
            epoch: Instant::now(),
            max_inflight,
            floor: MIN_LIMIT.min(max_inflight),
            limit: AtomicUsize::new(max_inflight),
            overloaded: AtomicBool::new(false),
            interval_start: AtomicU64::new(0),
            interval_min: AtomicU64::new(u64::MAX),
            interval_done: AtomicU64::new(0),
            interval_service: AtomicU64::new(0),
            limit_metric,
        }
    }

    /// The concurrency limit now in force (for reports).
    pub(super) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether queue delay has stood above the target (for reports).
    pub(super) fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }

    /// The limit and state a request arriving at `now` is judged by. Intervals are closed by
    /// finishing requests; when none closed one for two intervals, the endpoint was idle and
    /// whatever it decided then is stale: the limit doubles per idle interval and the overload
    /// ends.
    pub(super) fn current(&self, now: Instant) -> (usize, bool) {
        let limit = self.limit.load(Ordering::Relaxed);
        let overloaded = self.overloaded.load(Ordering::Relaxed);
        if limit == self.max_inflight && !overloaded {
            return (limit, false);
        }
        let now = micros(now.saturating_duration_since(self.epoch));
        let start = self.interval_start.load(Ordering::Relaxed);
        let idle = now.saturating_sub(start) / micros(INTERVAL);
        if idle < 2
            || self
                .interval_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return (limit, overloaded);
        }
        self.interval_min.store(u64::MAX, Ordering::Relaxed);
        self.interval_done.store(0, Ordering::Relaxed);
        self.interval_service.store(0, Ordering::Relaxed);
        let grown = limit.saturating_mul(1 << idle.min(16)).min(self.max_inflight);
        self.limit.store(grown, Ordering::Relaxed);
        self.limit_metric.set(grown as f64);
        self.overloaded.store(false, Ordering::Relaxed);
        (grown, false)
    }

    /// A request that arrived at `arrived` finished at `now` after `queued` of queue delay.
    pub(super) fn finished(&self, route: &'static str, queued: Duration, arrived: Instant, now: Instant) {
        let total = now.saturating_duration_since(arrived);
        self.interval_min.fetch_min(micros(queued), Ordering::Relaxed);
        self.interval_done.fetch_add(1, Ordering::Relaxed);
        self.interval_service
            .fetch_add(micros(total.saturating_sub(queued)), Ordering::Relaxed);
        let now = micros(now.saturating_duration_since(self.epoch));
        let start = self.interval_start.load(Ordering::Relaxed);
        if now < start.saturating_add(micros(INTERVAL)) {
            return;
        }
        // One finisher per interval closes it.
        if self
            .interval_start
            .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let seen = Interval {
            length: Duration::from_micros(now - start),
            min_queued: Duration::from_micros(self.interval_min.swap(u64::MAX, Ordering::Relaxed)),
            done: self.interval_done.swap(0, Ordering::Relaxed),
            service: Duration::from_micros(self.interval_service.swap(0, Ordering::Relaxed)),
        };
        let was = self.overloaded.load(Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        let (overloaded, next) = Self::decide(&seen, limit, self.floor, self.max_inflight);
        self.overloaded.store(overloaded, Ordering::Relaxed);
        self.limit.store(next, Ordering::Relaxed);
        self.limit_metric.set(next as f64);
        if overloaded != was {
            let min_queue_delay_ms = seen.min_queued.as_secs_f64() * 1000.0;
            if overloaded {
                tracing::warn!(
                    route,
                    min_queue_delay_ms,
                    limit = next,
                    "overloaded: queue delay stood above target, shedding"
                );
            } else {
                tracing::info!(route, limit = next, "no longer overloaded");
            }
        }
    }

    /// The end of an interval: whether the endpoint is overloaded, and its next limit.
    fn decide(seen: &Interval, limit: usize, floor: usize, max_inflight: usize) -> (bool, usize) {
        if seen.done < MIN_SAMPLES || seen.min_queued <= TARGET {
            return (false, (limit + limit / 8 + 1).min(max_inflight));
        }
        // Little's law: concurrency = throughput x time in the system. At the target, each
        // request spends its service time plus at most TARGET.
        let done = seen.done as f64;
        let throughput = done / seen.length.as_secs_f64().max(1e-3);
        let in_system = seen.service.as_secs_f64() / done + TARGET.as_secs_f64();
        let little = (throughput * in_system).ceil() as usize;
        (true, little.min(limit * 3 / 4).max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn interval(min_queued: Duration, done: u64, mean_service: Duration) -> Interval {
        Interval {
            length: INTERVAL,
            min_queued,
            done,
            service: mean_service * u32::try_from(done).unwrap(),
        }
    }

    #[test]
    fn a_queue_that_drains_is_left_alone_and_the_limit_grows_back() {
        assert_eq!(
            Controller::decide(&interval(Duration::ZERO, 300, MS), 512, 16, 512),
            (false, 512)
        );
        assert_eq!(
            Controller::decide(&interval(TARGET, 30, MS), 100, 16, 512),
            (false, 113)
        );
    }

    #[test]
    fn a_standing_queue_cuts_the_limit_to_what_keeps_the_delay_at_target() {
        // 300 answers in 100 ms (3,000/s) of 5 ms service each: 3,000/s x (5 + 5) ms = 30.
        assert_eq!(
            Controller::decide(&interval(50 * MS, 300, 5 * MS), 512, 16, 512),
            (true, 30)
        );
        // Never more than three quarters of the old limit, so repeated intervals converge ...
        assert_eq!(
            Controller::decide(&interval(50 * MS, 300, 5 * MS), 32, 16, 512),
            (true, 24)
        );
        // ... and never below the floor: an overloaded endpoint still keeps its store busy.
        assert_eq!(
            Controller::decide(&interval(50 * MS, 300, 5 * MS), 20, 16, 512),
            (true, 16)
        );
    }

    #[test]
    fn a_few_slow_requests_prove_nothing() {
        // One request that waited (a connection being opened) on an otherwise idle endpoint.
        let seen = interval(50 * MS, 1, MS);
        assert_eq!(Controller::decide(&seen, 512, 16, 512), (false, 512));
        let seen = interval(50 * MS, MIN_SAMPLES - 1, MS);
        assert!(!Controller::decide(&seen, 64, 16, 512).0);
    }

    fn aged(max_inflight: usize) -> Controller {
        let mut c = Controller::new(max_inflight, Gauge::noop());
        c.epoch -= Duration::from_secs(10);
        c
    }

    #[test]
    fn an_interval_is_judged_by_its_smallest_delay() {
        let c = aged(64);
        // The interval is not over yet: nothing is decided.
        c.interval_start.store(u64::MAX / 2, Ordering::Relaxed);
        for wait in (9..40).step_by(1) {
            let now = Instant::now();
            c.finished("/t", wait * MS, now - (wait + 1) * MS, now);
        }
        assert!(!c.overloaded.load(Ordering::Relaxed));
        // Close it: every request of it waited at least 9 ms, so the queue stood.
        c.interval_start.store(0, Ordering::Relaxed);
        let now = Instant::now();
        c.finished("/t", 50 * MS, now - 51 * MS, now);
        assert!(c.overloaded.load(Ordering::Relaxed));
        let lowered = c.limit.load(Ordering::Relaxed);
        assert!((16..=48).contains(&lowered), "{lowered}");
        // A later interval without a standing queue ends the overload.
        c.interval_start.store(0, Ordering::Relaxed);
        let now = Instant::now();
        c.finished("/t", Duration::ZERO, now - MS, now);
        assert!(!c.overloaded.load(Ordering::Relaxed));
        assert_eq!(c.limit.load(Ordering::Relaxed), lowered + lowered / 8 + 1);
    }

    #[test]
    fn a_decision_goes_stale_when_the_endpoint_idles() {
        let c = aged(512);
        c.limit.store(16, Ordering::Relaxed);
        c.overloaded.store(true, Ordering::Relaxed);
        let start = micros(c.epoch.elapsed());
        c.interval_start.store(start, Ordering::Relaxed);
        // Within the interval the decision holds ...
        assert_eq!(c.current(c.epoch + Duration::from_micros(start) + 50 * MS), (16, true));
        // ... three idle intervals later it does not: the limit doubles per idle interval.
        let later = c.epoch + Duration::from_micros(start) + 3 * INTERVAL;
        assert_eq!(c.current(later), (128, false));
        // Long idle: back to --max-inflight.
        let much_later = later + 100 * INTERVAL;
        assert_eq!(c.current(much_later), (512, false));
    }
}
