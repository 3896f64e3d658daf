//! Admission control for a hot endpoint: at most `max_inflight` requests run, at most
//! `queue_capacity` wait for a slot, and the next one is answered at once with 503
//! `temporarily_unavailable` and `Retry-After` (invariant 8), before the handler (and so the
//! store) is touched. Waiting and running together are bounded by the request timeout.
//!
//! This is the `load_shed → bounded queue → concurrency_limit → timeout` stack of tower, written
//! as one small middleware so that the queue is a counter rather than a `Buffer` worker task, and
//! its depth and shed count are observable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::telemetry::{self, Metrics};

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
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueReport {
    pub in_flight: usize,
    pub waiting: usize,
    pub capacity: usize,
    pub max_inflight: usize,
    pub shed_total: u64,
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
            }),
        }
    }

    pub fn route(&self) -> &'static str {
        self.inner.route
    }

    pub fn report(&self) -> QueueReport {
        let i = &self.inner;
        QueueReport {
            in_flight: i.max_inflight - i.running.available_permits(),
            waiting: i.waiting.load(Ordering::Relaxed),
            capacity: i.queue_capacity,
            max_inflight: i.max_inflight,
            shed_total: i.shed.load(Ordering::Relaxed),
        }
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

/// The middleware: `from_fn_with_state(admission, admit)`.
pub async fn admit(State(adm): State<Admission>, req: Request, next: Next) -> Response {
    let inner = &*adm.inner;
    let work = async {
        let _permit = match inner.running.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                let before = inner.waiting.fetch_add(1, Ordering::SeqCst);
                let waiting = Waiting(inner);
                if before >= inner.queue_capacity {
                    drop(waiting);
                    inner.shed.fetch_add(1, Ordering::Relaxed);
                    inner.shed_metric.increment(1);
                    tracing::debug!(route = inner.route, "shed: endpoint full");
                    return ApiError::Overloaded.into_response();
                }
                inner.depth.set((before + 1) as f64);
                let Ok(p) = inner.running.acquire().await else {
                    return ApiError::Overloaded.into_response();
                };
                drop(waiting);
                p
            }
        };
        next.run(req).await
    };
    match tokio::time::timeout(inner.timeout, work).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(route = inner.route, "request timed out");
            ApiError::Overloaded.into_response()
        }
    }
}
