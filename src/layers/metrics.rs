//! `http_server_request_duration_seconds{method, route, status}`, recorded in a drop guard so that
//! a request whose client went away (its future dropped) still counts, as status `cancelled`.
//! Installed with `route_layer`, so `route` is always the matched template and unmatched paths
//! create no series.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry::{HTTP_DURATION, Metrics};

struct Record<'a> {
    metrics: &'a Metrics,
    method: &'a str,
    route: &'a str,
    start: Instant,
    status: Option<u16>,
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        let status = self.status.map_or_else(|| "cancelled".to_owned(), |s| s.to_string());
        self.metrics
            .histogram(
                HTTP_DURATION,
                &[("method", self.method), ("route", self.route), ("status", &status)],
            )
            .record(self.start.elapsed().as_secs_f64());
    }
}

pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut record = Record {
        metrics: &metrics,
        method: method.as_str(),
        route: &route,
        start,
        status: None,
    };
    let res = next.run(req).await;
    record.status = Some(res.status().as_u16());
    res
}
