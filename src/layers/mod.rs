//! Our own tower layers: [`edge`] (what every answer passes), [`hot`] (the hot endpoints'
//! latency and admission, in front of the router), [`metrics`] (request latency) and
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
//! 2. [`hot::HotLayer`], between the edge and the router: a request to one of
//!    `http::HOT_ROUTES` (a fixed path) with a method its handlers serve is timed into its
//!    latency series ([`metrics`]) and goes through its route's [`admission::Admission`]
//!    (bounded in-flight requests, a bounded queue, shedding steered by queue delay, and the
//!    request timeout); timing sits above admission, so shed requests are counted too. A
//!    request to one of `http::TIMED_ROUTES` (introspection, revocation) is timed there too,
//!    without admission. Known by path and method, these need no route level: each layer axum
//!    stacks on a route
//!    (`route_layer`) is one more boxed service, which it clones with everything below it on
//!    every request, and one more boxed future. The hot layer also calls such a route's handler
//!    itself, without the router (HEAD, whose body the router's method routing strips, goes
//!    through it).
//! 3. [`metrics::TrackLayer`], as a `route_layer` of the other routes: only matched routes get a
//!    latency series, labelled by the route template.

pub mod admission;
pub mod cors;
pub mod edge;
pub mod hot;
pub mod metrics;
