//! The hot routes' latency series and admission control, in front of the router: a request to a
//! hot route (`http::HOT_ROUTES`: a fixed path, no parameters) is known by its path and method
//! before the router sees it, so the two need no route level of their own. The timed routes
//! (`http::TIMED_ROUTES`) get their series here too, without admission. As a `route_layer`
//! they were one: a boxed service that axum clones, with everything below it, on every request,
//! and one more boxed future. A request the edge answers itself (a CORS preflight) never comes
//! here; one with a method the route does not serve (405) passes untracked and unadmitted, as it
//! did under the `route_layer`.
//!
//! A route's handler is called here too ([`HotEntry::handler`]), not through the router: the
//! router would match the path again, insert the path parameters and the matched path into the
//! request's extensions, clone the route's boxed service and box one more future around the
//! handler's own, all per request. HEAD (a GET route's, answered without the body) goes through
//! the router, whose method routing strips the body; so do methods the route does not serve.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::admission::{Admission, AdmitFuture};
use super::metrics::{TrackFuture, TrackLayer};

/// One route timed here: its path, the methods its handlers serve, its admission control (a
/// hot route's; `None` for a route that is only timed) and its handler.
pub struct HotEntry {
    pub path: &'static str,
    pub methods: &'static [Method],
    pub admission: Option<Admission>,
    /// The handler of every method in `methods` but HEAD, called with the request as the
    /// router would (the same handler the router has for the path; HEAD goes through the
    /// router, for its body to be stripped).
    pub handler: Handler,
}

/// A route's handler with its state: what axum's `Handler::call` makes of a request.
pub type Handler = Box<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// axum's handler future (every `async fn` handler's is this box).
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// The layer, around the router; `None` for a router without hot routes.
#[derive(Clone)]
pub struct HotLayer(Option<Arc<Routes>>);

struct Routes {
    entries: Vec<HotEntry>,
    track: TrackLayer,
}

impl HotLayer {
    /// `track` is the latency series' layer the router's other routes share.
    pub fn new(entries: Vec<HotEntry>, track: TrackLayer) -> Self {
        Self(Some(Arc::new(Routes { entries, track })))
    }

    /// For routers without hot routes (management, tests of other layers).
    pub fn none() -> Self {
        Self(None)
    }
}

impl<S> Layer<S> for HotLayer {
    type Service = Hot<S>;

    fn layer(&self, inner: S) -> Hot<S> {
        Hot {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Hot<S> {
    inner: S,
    layer: HotLayer,
}

impl<S> Service<Request> for Hot<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = HotFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let path = req.uri().path();
        let found = self.layer.0.as_deref().and_then(|routes| {
            let entry = routes
                .entries
                .iter()
                .find(|r| r.path == path && r.methods.contains(req.method()))?;
            Some((&routes.track, entry))
        });
        let Some((track, route)) = found else {
            return HotFuture::Other {
                inner: self.inner.call(req),
            };
        };
        let method = req.method().clone();
        // One clock read: the request's arrival, for its admission and its latency series.
        let now = Instant::now();
        // The route's future is made at once (it does nothing until polled) and runs once
        // admitted.
        let inner = match method {
            Method::HEAD => Route::Router {
                inner: self.inner.call(req),
            },
            _ => Route::Handler {
                inner: (route.handler)(req),
            },
        };
        let Some(admission) = &route.admission else {
            return HotFuture::Timed {
                inner: track.track(method, route.path, inner, now),
            };
        };
        HotFuture::Hot {
            inner: track.track(method, route.path, admission.admit(inner, now), now),
        }
    }
}

pin_project! {
    #[project = HotProj]
    pub enum HotFuture<F> {
        Hot { #[pin] inner: TrackFuture<AdmitFuture<Route<F>>> },
        Timed { #[pin] inner: TrackFuture<Route<F>> },
        Other { #[pin] inner: F },
    }
}

pin_project! {
    /// A timed route's answer: its handler's, or the router's (HEAD).
    #[project = RouteProj]
    pub enum Route<F> {
        Handler { inner: HandlerFuture },
        Router { #[pin] inner: F },
    }
}

impl<F> Future for Route<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouteProj::Handler { inner } => inner.as_mut().poll(cx).map(Ok),
            RouteProj::Router { inner } => inner.poll(cx),
        }
    }
}

impl<F> Future for HotFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HotProj::Hot { inner } => inner.poll(cx),
            HotProj::Timed { inner } => inner.poll(cx),
            HotProj::Other { inner } => inner.poll(cx),
        }
    }
}
