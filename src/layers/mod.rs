//! Our own tower layers. Order, outermost first (see `app::router`):
//! 1. request id (set, then propagated to the response as `X-Request-Id`);
//! 2. trace span per request, carrying the request id;
//! 3. panic catcher (a panic becomes `{"error":"server_error"}`, never a dropped connection);
//! 4. per route: latency histogram (`route_layer`, so only matched routes get a series);
//! 5. per hot route: admission control (bounded in-flight + bounded queue, then shed with 503)
//!    and the request timeout.

pub mod metrics;
pub mod overload;
