//! `http_server_request_duration_seconds{method, route, status}`, recorded in a drop guard so that
//! a request whose client went away (its future dropped) still counts, as status `cancelled`.
//! Installed with `route_layer` ([`TrackLayer`]), so `route` is always the matched template and
//! unmatched paths create no series; the hot and timed routes are timed in front of the router
//! ([`TrackLayer::track`], from `layers::hot`), by their fixed paths. Histogram handles are kept per (method, route, status), so recording costs
//! a hash and a map read, not a registration with its label allocations.

use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use dashmap::DashMap;
use foldhash::fast::FixedState;
use metrics::Histogram;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::telemetry::{HTTP_DURATION, Metrics};

/// `None` stands for a request cancelled before it had a status.
type Status = Option<u16>;

/// One label set and its histogram.
type Entry = (Method, Box<str>, Status, Histogram);

pub struct HttpMetrics {
    metrics: Metrics,
    /// Keyed by a hash of (method, route, status); the vector holds the (rare) collisions. The
    /// labels are a matched route's (not a client's choice but for the method), so a fixed
    /// fast hash serves, for the key and the map.
    handles: DashMap<u64, Vec<Entry>, FixedState>,
}

impl HttpMetrics {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            handles: DashMap::default(),
        }
    }

    fn histogram(&self, method: &Method, route: &str, status: Status) -> Histogram {
        let key = FixedState::default().hash_one((method, route, status));
        let same = |e: &&Entry| e.0 == *method && &*e.1 == route && e.2 == status;
        if let Some(found) = self
            .handles
            .get(&key)
            .and_then(|v| v.iter().find(same).map(|e| e.3.clone()))
        {
            return found;
        }
        let status_label = status.map_or_else(|| "cancelled".to_owned(), |s| s.to_string());
        let histogram = self.metrics.histogram(
            HTTP_DURATION,
            &[("method", method.as_str()), ("route", route), ("status", &status_label)],
        );
        let mut entry = self.handles.entry(key).or_default();
        if !entry.iter().any(|e| same(&e)) {
            entry.push((method.clone(), route.into(), status, histogram.clone()));
        }
        histogram
    }
}

/// The layer: `route_layer(TrackLayer::new(metrics))`. A tower layer with a concrete future
/// (no boxing, no clone of the inner service per request, as `from_fn` has). Requests share
/// the handles through one `Arc` (one count per request, not the registry's three).
#[derive(Clone)]
pub struct TrackLayer(Arc<HttpMetrics>);

impl TrackLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self(Arc::new(HttpMetrics::new(metrics)))
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned().map(RouteName::Matched);
        track(&self.metrics, method, route, self.inner.call(req), Instant::now())
    }
}

impl TrackLayer {
    /// `inner`, a request to `route` (a route's template) by `method` that arrived at `start`,
    /// timed into its series: for a layer that knows the route without the router
    /// (`layers::hot`).
    pub fn track<F>(&self, method: Method, route: &'static str, inner: F, start: Instant) -> TrackFuture<F> {
        track(&self.0, method, Some(RouteName::Static(route)), inner, start)
    }
}

/// The series' clock runs from `start`, before `inner` is polled.
fn track<F>(
    metrics: &Arc<HttpMetrics>,
    method: Method,
    route: Option<RouteName>,
    inner: F,
    start: Instant,
) -> TrackFuture<F> {
    TrackFuture {
        inner,
        record: Record {
            metrics: Arc::clone(metrics),
            method,
            route,
            start,
            status: None,
        },
    }
}

pin_project! {
    /// The inner future, and the record its drop (or end) writes.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        record: Record,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &out {
            this.record.status = Some(res.status().as_u16());
        }
        Poll::Ready(out)
    }
}

/// The `route` label: the template the router matched, or one known without it.
enum RouteName {
    Matched(MatchedPath),
    Static(&'static str),
}

/// Written when dropped: at the end of the request, or when its client went away first.
struct Record {
    metrics: Arc<HttpMetrics>,
    method: Method,
    route: Option<RouteName>,
    start: Instant,
    status: Status,
}

impl Drop for Record {
    fn drop(&mut self) {
        let route = match &self.route {
            Some(RouteName::Matched(path)) => path.as_str(),
            Some(RouteName::Static(path)) => path,
            None => "",
        };
        self.metrics
            .histogram(&self.method, route, self.status)
            .record(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_reused_and_distinct_per_label_set() {
        let m = HttpMetrics::new(Metrics::new());
        m.histogram(&Method::GET, "/a", Some(200)).record(1.0);
        m.histogram(&Method::GET, "/a", Some(200)).record(1.0);
        m.histogram(&Method::POST, "/a", Some(200)).record(1.0);
        m.histogram(&Method::GET, "/a", None).record(1.0);
        let text = m.metrics.render();
        assert!(text.contains(r#"http_server_request_duration_seconds_count{method="GET",route="/a",status="200"} 2"#));
        assert!(
            text.contains(r#"http_server_request_duration_seconds_count{method="POST",route="/a",status="200"} 1"#)
        );
        assert!(text.contains(r#"status="cancelled"} 1"#));
        assert_eq!(m.handles.iter().map(|e| e.value().len()).sum::<usize>(), 3);
    }
}
