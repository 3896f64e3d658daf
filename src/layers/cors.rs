//! CORS for the token plane (docs/reference.md section 3, "Browsers calling the token plane"): a browser
//! app served from its own origin calls the endpoints of [`http::CORS_ROUTES`](crate::http::CORS_ROUTES)
//! with `fetch`. The policy is that table, and the allowed origins are the union of every
//! client's `allowed_origins` (a preflight carries no client id, so it cannot be narrower).
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) to a path of the
//!   table is answered here, before the route: it takes no admission slot and is never shed.
//!   From an allowed origin: 204 with `Access-Control-Allow-Origin` echoing it, the route's
//!   methods and the request headers `Authorization`, `Content-Type`, `DPoP`. From any other
//!   origin: 403 with an empty body and no CORS header, so the browser stops there.
//! - Every other answer on those paths, errors and 503s included, carries
//!   `Access-Control-Allow-Origin` for an allowed origin and `Access-Control-Expose-Headers`
//!   (`WWW-Authenticate`, `DPoP-Nonce`), so that the page can read why it was refused.
//!   `Vary: Origin` wherever the answer depends on it.
//! - Documents any origin may read (metadata) answer `Access-Control-Allow-Origin: *`.
//! - Never `Access-Control-Allow-Credentials`: cookies never cross origins. Paths outside the
//!   table (login, authorize, the operators' endpoints) get no CORS header at all; an `OPTIONS`
//!   there, or one without `Origin` or `Access-Control-Request-Method` anywhere, goes to the
//!   router (405).
//!
//! Why not tower-http's `CorsLayer`: it answers every preflight itself, with 200 and whether or
//! not the origin is allowed, and one layer holds one method list; the contract asks for 204,
//! per-path methods and origins, and nothing for the paths outside the table.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::Origin;

/// The request headers a browser app may send: a Bearer or DPoP token, a form or JSON body, and
/// a DPoP proof.
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("Authorization, Content-Type, DPoP");
/// The answer headers a page may read beyond the CORS-safelisted ones: why a token was refused,
/// and the nonce a DPoP proof must carry.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("WWW-Authenticate, DPoP-Nonce");
/// How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
const MAX_AGE: HeaderValue = HeaderValue::from_static("600");

/// Who may read a path's answers from another origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origins {
    /// Any page: public documents with nothing in them that depends on who asks.
    Any,
    /// The pages of the clients' allowed origins.
    Clients,
}

/// One path of the token plane that browser apps may call.
#[derive(Debug)]
pub struct CorsRoute {
    pub path: &'static str,
    /// `Access-Control-Allow-Methods`: the methods the path is routed for.
    pub methods: &'static str,
    pub origins: Origins,
}

/// The policy: the routes, and the origins allowed on the [`Origins::Clients`] ones. Clones share it.
#[derive(Clone)]
pub struct Cors {
    inner: Arc<Inner>,
}

struct Inner {
    routes: &'static [CorsRoute],
    origins: HashSet<String>,
}

impl Cors {
    pub fn new<'a>(routes: &'static [CorsRoute], origins: impl IntoIterator<Item = &'a Origin>) -> Self {
        let origins = origins.into_iter().map(|o| o.as_str().to_owned()).collect();
        Self {
            inner: Arc::new(Inner { routes, origins }),
        }
    }

    fn route(&self, path: &str) -> Option<&'static CorsRoute> {
        self.inner.routes.iter().find(|r| r.path == path)
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin` (its `Origin` header),
    /// or `None` when that origin may not read the answer.
    fn allow_origin(&self, route: &CorsRoute, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match route.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::Clients => {
                let origin = origin?;
                let known = origin.to_str().is_ok_and(|o| self.inner.origins.contains(o));
                known.then(|| origin.clone())
            }
        }
    }
}

/// What CORS makes of a request, and adds to its answer ([`CorsCheck::apply`]).
pub enum CorsCheck {
    /// A path outside the table: no CORS header.
    Outside,
    /// A preflight, answered here: the route is not called.
    Preflight(Response),
    /// A request to a path of the table: `Vary: Origin` where the answer depends on it, and the
    /// allowed origin with the exposed headers when it may read the answer.
    Route {
        route: &'static CorsRoute,
        allow: Option<HeaderValue>,
    },
}

impl Cors {
    /// A path outside the table costs one lookup and nothing else.
    pub fn check(&self, req: &Request) -> CorsCheck {
        let Some(route) = self.route(req.uri().path()) else {
            return CorsCheck::Outside;
        };
        let origin = single(req.headers(), &ORIGIN);
        let allow = self.allow_origin(route, origin.as_ref());
        let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if preflight && origin.is_some() {
            return CorsCheck::Preflight(preflight_answer(route, allow));
        }
        CorsCheck::Route { route, allow }
    }
}

impl CorsCheck {
    /// Adds the CORS headers of a route's answer (a preflight's has its own already).
    pub fn apply(self, h: &mut HeaderMap) {
        if let CorsCheck::Route { route, allow } = self {
            vary_on_origin(route, h);
            if let Some(allow) = allow {
                h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
                h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
            }
        }
    }
}

fn preflight_answer(route: &CorsRoute, allow: Option<HeaderValue>) -> Response {
    let Some(allow) = allow else {
        tracing::debug!(path = route.path, "CORS preflight from an origin no client allows");
        let mut res = StatusCode::FORBIDDEN.into_response();
        vary_on_origin(route, res.headers_mut());
        return res;
    };
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    vary_on_origin(route, h);
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(route.methods));
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    h.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    res
}

/// A cache must key the answer on `Origin` when it depends on it.
fn vary_on_origin(route: &CorsRoute, h: &mut HeaderMap) {
    if route.origins == Origins::Clients {
        h.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// The header when it was sent exactly once: two `Origin` headers match no origin.
fn single(h: &HeaderMap, name: &axum::http::HeaderName) -> Option<HeaderValue> {
    let mut values = h.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v.clone()),
        _ => None,
    }
}
