//! The `request` span around each request, carrying its request id, method and path (never the
//! query: it can carry state and codes). What tower-http's `TraceLayer` would give here minus
//! what the server does not use: its response classifier, its own events (the `error` log of a
//! 500 or 503 comes from `error::log_error_cause`, once, with its cause), its clock reads, and the
//! body wrapper that enters the span again for every frame.

use axum::extract::Request;
use axum::http::HeaderName;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// A constant name: a lookup by `&str` parses and checks the name on every request.
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Copy)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> RequestSpan<S> {
        RequestSpan { inner }
    }
}

#[derive(Clone)]
pub struct RequestSpan<S> {
    inner: S,
}

impl<S> Service<Request> for RequestSpan<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
        // Not entered for `call`: the layers and handlers below make their futures there and do
        // their work (and their logging) when polled, inside the span.
        self.inner.call(req).instrument(span)
    }
}
