//! Our own tower layers: [`metrics`] (request latency), [`admission`] (admission control of the
//! hot endpoints) and [`cors`] (browsers calling the token plane). `http::router` stacks them
//! with tower-http's; the order a request meets them, outermost first:
//!
//! 1. `http::outer_layers`, on every route and the fallbacks: request id (set, then propagated to
//!    the response as `X-Request-Id`); the `request` span, carrying the request id; the logging
//!    of error causes (`error::log_error_cause`: the internal cause of a 500 or 503, once, inside
//!    the span); [`cors`], on the paths of `http::CORS_ROUTES` only (it answers a preflight
//!    itself, so a preflight takes no admission slot, is never shed and has no latency series;
//!    every other answer there, 503s and panics included, gets its CORS headers here); the panic
//!    catcher (a panic becomes `{"error":"server_error"}`, never a dropped connection); the
//!    security headers. The OAuth-format 404 and 405 answers are the fallbacks inside them.
//! 2. [`metrics::TrackLayer`], as a `route_layer`: only matched routes get a latency series, labelled
//!    by the route template. It sits above admission, so shed requests are counted too.
//! 3. [`admission::Admission`], a layer of each of `http::HOT_ROUTES` only: bounded in-flight requests, a
//!    bounded queue, shedding steered by queue delay, and the request timeout.

pub mod admission;
pub mod cors;
pub mod metrics;
pub mod span;

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// `X-Request-Id` for a request without one: a random UUID from the thread's generator
/// (tower-http's `MakeRequestUuid` asks the OS for every one, a system call per request).
#[derive(Clone, Copy)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut text = uuid::Uuid::encode_buffer();
        let id = crate::crypto::random_uuid().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}
