//! Our own tower layers: [`edge`] (what every answer passes), [`metrics`] (request latency) and
//! [`admission`] (admission control of the hot endpoints); [`cors`] is the policy the edge
//! applies. `http::router` stacks them; the order a request meets them, outermost first:
//!
//! 1. [`edge::EdgeLayer`] (`http::outer_layers`), around the router (`http::HttpService`, what
//!    the listeners serve), so on every route and the fallbacks without being a route level of
//!    its own: request id (set, then propagated to the response as `X-Request-Id`); the
//!    `request` span, carrying the request id; [`cors`], on the paths of `http::CORS_ROUTES`
//!    only (a preflight is answered there, so it takes no admission slot, is never shed and has
//!    no latency series; every other answer there, 503s and panics included, gets its CORS
//!    headers); the panic catcher (a panic becomes `{"error":"server_error"}`, never a dropped
//!    connection); the security headers on every answer; the logging of error causes
//!    (`error::log_error_cause`: the internal cause of a 500 or 503, once, inside the span). The
//!    OAuth-format 404 and 405 answers are the fallbacks inside it.
//! 2. [`metrics::TrackLayer`], as a `route_layer`: only matched routes get a latency series,
//!    labelled by the route template. It sits above admission, so shed requests are counted too.
//! 3. [`admission::Admission`], on each of `http::HOT_ROUTES` only: bounded in-flight requests, a
//!    bounded queue, shedding steered by queue delay, and the request timeout. A hot route gets
//!    the two as one `route_layer` (the pair `(track, admission)`): each layer axum stacks on a
//!    route is one more boxed service, which it clones with everything below it on every
//!    request, and one more boxed future.

pub mod admission;
pub mod cors;
pub mod edge;
pub mod metrics;
