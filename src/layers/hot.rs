//! The hot routes' latency series and admission control, in front of the router: a request to a
//! hot route (`http::HOT_ROUTES`: a fixed path, no parameters) is known by its path and method
//! before the router sees it, so the two need no route level of their own. The timed routes
//! (`http::TIMED_ROUTES`) get their series here too, without admission. As a `route_layer`
//! they were one: a boxed service that axum clones, with everything below it, on every request,
//! and one more boxed future. A request the edge answers itself (a CORS preflight) never comes
//! here; one with a method the route does not serve (405) passes untracked and unadmitted, as it
//! did under the `route_layer`.

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
/// hot route's; `None` for a route that is only timed).
pub struct HotEntry {
    pub path: &'static str,
    pub methods: &'static [Method],
    pub admission: Option<Admission>,
}

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
        let Some(admission) = &route.admission else {
            return HotFuture::Timed {
                inner: track.track(method, route.path, self.inner.call(req), now),
            };
        };
        // The router routes at once and makes the route's future, which runs once admitted.
        let admitted = admission.admit(self.inner.call(req), now);
        HotFuture::Hot {
            inner: track.track(method, route.path, admitted, now),
        }
    }
}

pin_project! {
    #[project = HotProj]
    pub enum HotFuture<F> {
        Hot { #[pin] inner: TrackFuture<AdmitFuture<F>> },
        Timed { #[pin] inner: TrackFuture<F> },
        Other { #[pin] inner: F },
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
