//! Admission control: which requests to a hot endpoint run now, which wait, and which are answered
//! at once with 503 `temporarily_unavailable` and `Retry-After` (invariant 8 of docs/reference.md), before the handler
//! (and so the store) is touched. One [`Admission`] per hot route (`http::HOT_ROUTES`), mounted
//! as a layer of the route (`route.layer(admission)`).
//!
//! - Counts ([`admit`]): at most `--max-inflight` requests run, at most `--queue-capacity` wait
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

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge};
use pin_project_lite::pin_project;
use serde::Serialize;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

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

pin_project! {
    /// `work` until `deadline` (the request timeout, from the request's arrival), else `None`.
    /// The timer is armed only when `work` does not finish on its first poll, which almost every
    /// request on the memory store does: those read no clock for it and make no timer entry
    /// (`tokio::time::timeout` does both for every request).
    struct Deadline<F> {
        #[pin]
        work: F,
        deadline: Instant,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.project();
        if let Poll::Ready(out) = this.work.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        timer.as_mut().poll(cx).map(|()| None)
    }
}

/// Decrements the waiting count however the wait ends (admitted, timed out, or the client left).
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
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

impl<S> Layer<S> for Admission {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            admission: self.clone(),
        }
    }
}

/// The middleware: `route.layer(admission)`. The route's future is made at once (it does
/// nothing until polled) and runs only once admitted; one boxed future per request, where
/// `from_fn` also boxes and clones the inner service.
#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    admission: Admission,
}

impl<S> Service<Request> for Admit<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let arrived = Instant::now();
        let route = self.inner.call(req);
        let admission = self.admission.clone();
        Box::pin(async move { Ok(admit(&admission.inner, arrived, route).await) })
    }
}

/// Runs `route` once admitted, within the request timeout; else answers 503 at once.
async fn admit<F>(inner: &Inner, arrived: Instant, route: F) -> Response
where
    F: Future<Output = Result<Response, Infallible>>,
{
    let work = async {
        let (limit, overloaded) = inner.control.current(arrived);
        let free = if inner.in_flight() < limit {
            inner.running.try_acquire().ok()
        } else {
            None
        };
        // The permit, and how long the request waited for it (none when admitted at once: no
        // clock read for that).
        let (_permit, admitted) = match free {
            Some(p) => (p, Duration::ZERO),
            // The controller holds the limit below the hard cap (a standing queue, or the
            // recovery after one): no queueing, the request is answered at once.
            None if overloaded || limit < inner.max_inflight => return inner.shed("standing queue"),
            None => {
                let before = inner.waiting.fetch_add(1, Ordering::SeqCst);
                let waiting = Waiting(inner);
                if before >= inner.queue_capacity {
                    drop(waiting);
                    return inner.shed("endpoint full");
                }
                inner.depth.set((before + 1) as f64);
                let Ok(p) = inner.running.acquire().await else {
                    return ApiError::Overloaded.into_response();
                };
                drop(waiting);
                // The queue may have turned into a standing one while this request waited in it.
                let now = Instant::now();
                let (limit, overloaded) = inner.control.current(now);
                if overloaded && inner.in_flight() > limit {
                    return inner.shed("standing queue");
                }
                (p, now.saturating_duration_since(arrived))
            }
        };
        let (res, below) = queue_delay::measure(route).await;
        let res = match res {
            Ok(res) => res,
            Err(never) => match never {},
        };
        inner
            .control
            .finished(inner.route, admitted + below, arrived, Instant::now());
        res
    };
    match (Deadline {
        work,
        deadline: arrived + inner.timeout,
        timer: None,
    })
    .await
    {
        Some(res) => res,
        None => {
            tracing::warn!(route = inner.route, "request timed out");
            // Counted as queued throughout: a request that could not finish in time is the
            // clearest sign of a standing queue (or of a store that stopped answering).
            inner
                .control
                .finished(inner.route, inner.timeout, arrived, Instant::now());
            ApiError::Overloaded.into_response()
        }
    }
}
