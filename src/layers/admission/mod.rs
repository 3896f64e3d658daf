//! Admission control: which requests to a hot endpoint run now, which wait, and which are answered
//! at once with 503 `temporarily_unavailable` and `Retry-After` (invariant 8 of docs/reference.md), before the handler
//! (and so the store) is touched. One [`Admission`] per hot route (`http::HOT_ROUTES`), applied
//! in front of the router by `layers::hot` ([`Admission::admit`]).
//!
//! - Counts ([`Admission::admit`]): at most `--max-inflight` requests run, at most `--queue-capacity` wait
//!   for a slot, and the next one is shed. Waiting and running together are bounded by the request
//!   timeout. This is the `load_shed → bounded queue → concurrency_limit → timeout` stack of tower,
//!   written as one small middleware so that the queue is a counter rather than a `Buffer` worker
//!   task, and its depth and shed count are observable.
//! - Delay ([`controller`]): counts alone cannot keep latency bounded: 512 requests in flight
//!   behind 16 store connections is a standing queue of hundreds of milliseconds that no count was
//!   exceeded for. So admission also steers by queue delay, as CoDel does: under sustained
//!   overload an endpoint answers the requests it admits fast and the others at once with 503,
//!   instead of all of them slowly.
//! - Queue delay ([`queue_delay`]): the time a request waited for a slot here plus the time it
//!   waited below (for a pooled store connection), which the store reports through a task-local.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge};
use pin_project_lite::pin_project;
use serde::Serialize;
use tokio::sync::Semaphore;

use self::controller::Controller;
use crate::error::ApiError;
use crate::telemetry::{self, Metrics};

mod controller;
pub mod queue_delay;

/// One hot route's admission control; clones share it.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    route: &'static str,
    running: Semaphore,
    max_inflight: usize,
    waiting: AtomicUsize,
    queue_capacity: usize,
    timeout: Duration,
    shed: AtomicU64,
    shed_metric: Counter,
    depth: Gauge,
    control: Controller,
}

/// One route's admission state, as `/debug/health` shows it (under `queues`).
#[derive(Clone, Debug, Serialize)]
pub struct AdmissionReport {
    pub in_flight: usize,
    pub waiting: usize,
    pub capacity: usize,
    pub max_inflight: usize,
    pub shed_total: u64,
    /// Whether queue delay has stood above the target: no queueing, at most `concurrency_limit`.
    pub overloaded: bool,
    /// Requests admitted at once: `max_inflight` at rest, lower while the delay controller sheds.
    pub concurrency_limit: usize,
}

impl Admission {
    pub fn new(
        route: &'static str,
        max_inflight: usize,
        queue_capacity: usize,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Self {
        let depth = metrics.gauge(telemetry::QUEUE_DEPTH, &[("route", route)]);
        depth.set(0.0);
        let shed_metric = metrics.counter(telemetry::REQUESTS_SHED, &[("route", route)]);
        shed_metric.absolute(0);
        let limit_metric = metrics.gauge(telemetry::CONCURRENCY_LIMIT, &[("route", route)]);
        limit_metric.set(max_inflight as f64);
        Self {
            inner: Arc::new(Inner {
                route,
                running: Semaphore::new(max_inflight),
                max_inflight,
                waiting: AtomicUsize::new(0),
                queue_capacity,
                timeout,
                shed: AtomicU64::new(0),
                shed_metric,
                depth,
                control: Controller::new(max_inflight, limit_metric),
            }),
        }
    }

    pub fn route(&self) -> &'static str {
        self.inner.route
    }

    pub fn report(&self) -> AdmissionReport {
        let i = &self.inner;
        AdmissionReport {
            in_flight: i.max_inflight - i.running.available_permits(),
            waiting: i.waiting.load(Ordering::Relaxed),
            capacity: i.queue_capacity,
            max_inflight: i.max_inflight,
            shed_total: i.shed.load(Ordering::Relaxed),
            overloaded: i.control.is_overloaded(),
            concurrency_limit: i.control.limit(),
        }
    }
}

/// Holds one of the route's running slots; gives it back when dropped (answered, timed out, or
/// the client left).
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.add_permits(1);
    }
}

/// Decrements the waiting count however the wait ends (admitted, timed out, or the client left).
struct Waiting(Arc<Inner>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let now = self.0.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.depth.set(now as f64);
    }
}

impl Inner {
    fn in_flight(&self) -> usize {
        self.max_inflight - self.running.available_permits()
    }

    fn shed(&self, why: &'static str) -> Response {
        self.shed.fetch_add(1, Ordering::Relaxed);
        self.shed_metric.increment(1);
        tracing::debug!(route = self.route, why, "shed");
        ApiError::Overloaded.into_response()
    }
}

impl Admission {
    /// `route`, a request's future, made at once (it does nothing until polled) and run only
    /// once admitted, inside [`AdmitFuture`]: no boxing and no clone of a service per request,
    /// where `from_fn` does both. Called by `layers::hot`, which knows the route by its path
    /// and reads the clock once for the request's `arrived` and its latency series' start.
    pub fn admit<F: Future>(&self, route: F, arrived: Instant) -> AdmitFuture<F> {
        AdmitFuture {
            route: Some(queue_delay::scope(route)),
            inner: Arc::clone(&self.inner),
            arrived,
            stage: Stage::Arrived,
            timer: None,
        }
    }
}

/// Where a request is in admission.
enum Stage {
    /// Not yet looked at (the first poll decides).
    Arrived,
    /// In the queue, for a slot (the wait is a boxed future: only queued requests make one).
    Waiting {
        slot: Pin<Box<dyn Future<Output = Option<Slot>> + Send>>,
        _counted: Waiting,
    },
    /// Admitted after `queued` in the queue: the route runs.
    Running { _slot: Slot, queued: Duration },
    /// Answered.
    Done,
}

pin_project! {
    /// A request through admission: admitted at once, queued, or shed with 503; once admitted
    /// its route runs within the request timeout, counted from its arrival. The timer is armed
    /// only when the request is not answered on its first poll, which almost every request on
    /// the memory store is: those read no clock for it and make no timer entry.
    pub struct AdmitFuture<F> {
        #[pin]
        route: Option<queue_delay::Measured<F>>,
        inner: Arc<Inner>,
        arrived: Instant,
        stage: Stage,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> Future for AdmitFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner = &**this.inner;
        loop {
            match this.stage {
                Stage::Arrived => {
                    let (limit, overloaded) = inner.control.current(*this.arrived);
                    let free = if inner.in_flight() < limit {
                        inner.running.try_acquire().ok()
                    } else {
                        None
                    };
                    if let Some(permit) = free {
                        permit.forget();
                        let slot = Slot(Arc::clone(this.inner));
                        // Admitted at once: no clock read for its (zero) queue delay.
                        *this.stage = Stage::Running {
                            _slot: slot,
                            queued: Duration::ZERO,
                        };
                        continue;
                    }
                    // The controller holds the limit below the hard cap (a standing queue, or
                    // the recovery after one): no queueing, the request is answered at once.
                    if overloaded || limit < inner.max_inflight {
                        return answer(this.route.as_mut(), this.stage, inner.shed("standing queue"));
                    }
                    let before = inner.waiting.fetch_add(1, Ordering::SeqCst);
                    let counted = Waiting(Arc::clone(this.inner));
                    if before >= inner.queue_capacity {
                        drop(counted);
                        return answer(this.route.as_mut(), this.stage, inner.shed("endpoint full"));
                    }
                    inner.depth.set((before + 1) as f64);
                    let owner = Arc::clone(this.inner);
                    let slot = async move {
                        let permit = owner.running.acquire().await.ok()?;
                        permit.forget();
                        Some(Slot(owner))
                    };
                    *this.stage = Stage::Waiting {
                        slot: Box::pin(slot),
                        _counted: counted,
                    };
                }
                Stage::Waiting { slot, .. } => {
                    let Poll::Ready(slot) = slot.as_mut().poll(cx) else {
                        break;
                    };
                    let Some(slot) = slot else {
                        return answer(this.route.as_mut(), this.stage, ApiError::Overloaded.into_response());
                    };
                    // The queue may have turned into a standing one while this request waited.
                    let now = Instant::now();
                    let (limit, overloaded) = inner.control.current(now);
                    if overloaded && inner.in_flight() > limit {
                        drop(slot);
                        return answer(this.route.as_mut(), this.stage, inner.shed("standing queue"));
                    }
                    *this.stage = Stage::Running {
                        _slot: slot,
                        queued: now.saturating_duration_since(*this.arrived),
                    };
                }
                Stage::Running { queued, .. } => {
                    let queued = *queued;
                    let Some(mut route) = this.route.as_mut().as_pin_mut() else {
                        return Poll::Pending;
                    };
                    let Poll::Ready(res) = route.as_mut().poll(cx) else {
                        break;
                    };
                    let below = queue_delay::waited(route);
                    inner
                        .control
                        .finished(inner.route, queued + below, *this.arrived, Instant::now());
                    let Ok(res) = res;
                    return answer(this.route.as_mut(), this.stage, res);
                }
                // Polled after its answer: nothing more to give.
                Stage::Done => return Poll::Pending,
            }
        }
        // Not answered on this poll: the request timeout, from its arrival.
        let deadline = *this.arrived + inner.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::warn!(route = inner.route, "request timed out");
        // Counted as queued throughout: a request that could not finish in time is the clearest
        // sign of a standing queue (or of a store that stopped answering).
        inner
            .control
            .finished(inner.route, inner.timeout, *this.arrived, Instant::now());
        answer(this.route.as_mut(), this.stage, ApiError::Overloaded.into_response())
    }
}

/// The answer: the route (if it ran) is dropped and the slot or queue place given back first.
fn answer<F>(
    mut route: Pin<&mut Option<queue_delay::Measured<F>>>,
    stage: &mut Stage,
    res: Response,
) -> Poll<Result<Response, Infallible>> {
    route.set(None);
    *stage = Stage::Done;
    Poll::Ready(Ok(res))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use futures::FutureExt;
    use tokio::sync::Notify;

    use super::*;

    /// A route's future.
    type Route = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    /// One slot, one queue place, a request timeout of `timeout`; `call()` is a request through
    /// it, whose route answers 200 once `go` is notified (one permit per request).
    fn admitted(go: &Arc<Notify>, timeout: Duration) -> (Admission, impl Fn() -> AdmitFuture<Route>) {
        let admission = Admission::new("/t", 1, 1, timeout, &Metrics::new());
        let go = Arc::clone(go);
        let call = {
            let admission = admission.clone();
            move || {
                let go = Arc::clone(&go);
                let route = Box::pin(async move {
                    go.notified().await;
                    Ok::<_, Infallible>(StatusCode::OK.into_response())
                });
                admission.admit(route as Route, Instant::now())
            }
        };
        (admission, call)
    }

    #[tokio::test]
    async fn a_queued_request_that_times_out_gives_back_its_place_and_takes_no_slot() {
        let go = Arc::new(Notify::new());
        let (admission, call) = admitted(&go, Duration::from_millis(200));
        let mut running = Box::pin(call());
        assert!(running.as_mut().now_or_never().is_none());
        let queued = call();
        let shed = call();
        let (queued, shed) = tokio::join!(queued, shed);
        // The third found the slot taken and the queue full: shed at once; the second waited
        // in the queue until the timeout.
        assert_eq!(shed.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(queued.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = admission.report();
        assert_eq!((r.in_flight, r.waiting, r.shed_total), (1, 0, 1));
        // The running one still holds its slot, and times out too: the slot comes back.
        assert_eq!(running.await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = admission.report();
        assert_eq!((r.in_flight, r.waiting), (0, 0));
        // Free again: the next request runs.
        let next = call();
        go.notify_one();
        assert_eq!(next.await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_client_that_leaves_gives_back_its_slot_or_its_queue_place() {
        let go = Arc::new(Notify::new());
        let (admission, call) = admitted(&go, Duration::from_secs(60));
        let mut running = Box::pin(call());
        let mut queued = Box::pin(call());
        assert!(running.as_mut().now_or_never().is_none());
        assert!(queued.as_mut().now_or_never().is_none());
        let r = admission.report();
        assert_eq!((r.in_flight, r.waiting), (1, 1));
        drop(queued);
        assert_eq!(admission.report().waiting, 0);
        drop(running);
        assert_eq!(admission.report().in_flight, 0);
        // A queued request is admitted when the running one ends.
        let mut first = Box::pin(call());
        let mut second = Box::pin(call());
        assert!(first.as_mut().now_or_never().is_none());
        assert!(second.as_mut().now_or_never().is_none());
        go.notify_one();
        assert_eq!(first.await.unwrap().status(), StatusCode::OK);
        go.notify_one();
        assert_eq!(second.await.unwrap().status(), StatusCode::OK);
        let r = admission.report();
        assert_eq!((r.in_flight, r.waiting, r.shed_total), (0, 0, 0));
    }
}
