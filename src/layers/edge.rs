//! The edge every answer passes: request id, the `request` span, CORS, the panic catcher, the
//! security headers and the logging of error causes, as one tower layer with one future.
//!
//! They were six layers (tower-http's request id pair and panic catcher, our span and CORS, two
//! `MapResponse`s): six futures moved into one another on every request, and two boxings of
//! every answer's body (the panic catcher's body type, then back to axum's). What each part does
//! is unchanged; the order in which the answer is finished is the old order, innermost first:
//!
//! 1. the security headers, each unless the handler set its own: now on every answer, panics
//!    and CORS preflights included (they used to miss them, being made above that layer);
//! 2. the CORS headers ([`cors`](super::cors)), on the paths of its table only;
//! 3. `X-Request-Id`, the request's own or the one made for it, unless the handler set one;
//! 4. `Strict-Transport-Security` when the issuer is https, unless the handler set its own;
//! 5. the error cause (`error::log_error_cause`), logged once inside the span: the internal cause
//!    of a 500 or 503, a panic's too.
//!
//! The span is not entered for the inner `call` (the layers and handlers below make their
//! futures there and work when polled), and is entered for every poll; with the plain log it is
//! made only once something inside the request logs or opens a span
//! ([`crate::telemetry::RequestSpan`]).

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::cors::{Cors, CorsCheck};
use crate::error::{ApiError, log_error_cause};
use crate::telemetry::RequestSpan;

/// `(target, name)` of the span every request runs in (made by [`crate::telemetry::RequestSpan`]);
/// its fields are `&str`, written into the text log by [`crate::telemetry::RequestSpanFields`].
pub const REQUEST_SPAN: (&str, &str) = (module_path!(), "request");

/// A constant name: a lookup by `&str` parses and checks the name on every request.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Content-Security-Policy for everything we serve: the login page needs only its inline style.
/// No `form-action`: browsers apply it to the redirect chain after the login post, which ends at
/// the client's redirect_uri (docs/reference.md section 3).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// `Strict-Transport-Security` when the issuer is https: a year, subdomains included.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// The layer; `hsts` when the issuer is https.
#[derive(Clone)]
pub struct EdgeLayer {
    cors: Cors,
    hsts: bool,
}

impl EdgeLayer {
    pub fn new(cors: Cors, hsts: bool) -> Self {
        Self { cors, hsts }
    }

    /// For routers no client's page calls with its credentials (management, the benchmark
    /// baseline): the CORS table with no client origin, and no HSTS.
    pub fn without_clients() -> Self {
        Self::new(Cors::new(&crate::http::CORS_ROUTES, std::iter::empty()), false)
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            cors: self.cors.clone(),
            hsts: self.hsts,
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    cors: Cors,
    hsts: bool,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let request_id = request_id(&mut req);
        let span = RequestSpan::new(request_id.as_ref(), &req);
        let (state, cors) = match self.cors.check(&req) {
            CorsCheck::Preflight(answer) => (State::Answered { answer: Some(answer) }, CorsCheck::Outside),
            // A panic in `call` is caught as one in `poll` is.
            cors => match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                Ok(inner) => (State::Running { inner }, cors),
                Err(_) => (
                    State::Answered {
                        answer: Some(panic_answer()),
                    },
                    cors,
                ),
            },
        };
        EdgeFuture {
            state,
            span,
            finish: Finish {
                request_id,
                cors,
                hsts: self.hsts,
            },
        }
    }
}

/// The request's `X-Request-Id`, or a new one (a random UUID from the thread's generator:
/// tower-http's `MakeRequestUuid` asks the OS for every one) set on the request for the layers
/// and handlers below.
fn request_id(req: &mut Request) -> Option<HeaderValue> {
    if let Some(id) = req.headers().get(&REQUEST_ID) {
        return Some(id.clone());
    }
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    crate::crypto::random_uuid().hyphenated().encode_lower(&mut text);
    // Owned by the bytes, so the clones below (request, answer) share it: `from_str` would
    // copy it into a vector that its first clone turns into a shared buffer, two allocations.
    let id = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)).ok()?;
    req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    Some(id)
}

/// A panic becomes `{"error":"server_error"}`, never a dropped connection; its cause is logged
/// like any internal error's (the panic's message went to the panic hook, on stderr).
fn panic_answer() -> Response {
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

pin_project! {
    pub struct EdgeFuture<F> {
        #[pin]
        state: State<F>,
        span: RequestSpan,
        finish: Finish,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] inner: F },
        Answered { answer: Option<Response> },
    }
}

/// What the answer gets on its way out.
struct Finish {
    request_id: Option<HeaderValue>,
    cors: CorsCheck,
    hsts: bool,
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let answer = match this.state.as_mut().project() {
            StateProj::Running { inner } => match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Ok(answer))) => answer,
                Err(_) => {
                    // Never poll a future that panicked again.
                    this.state.set(State::Answered { answer: None });
                    panic_answer()
                }
            },
            // Polled after completion: nothing more to give.
            StateProj::Answered { answer } => match answer.take() {
                Some(answer) => answer,
                None => return Poll::Pending,
            },
        };
        Poll::Ready(Ok(this.finish.answer(answer)))
    }
}

impl Finish {
    fn answer(&mut self, mut res: Response) -> Response {
        let headers = res.headers_mut();
        // Room for what is added here (CORS aside), so the map grows at most once.
        headers.reserve(6);
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ] {
            headers.entry(name).or_insert_with(|| HeaderValue::from_static(value));
        }
        std::mem::replace(&mut self.cors, CorsCheck::Outside).apply(headers);
        if let Some(id) = self.request_id.take() {
            headers.entry(&REQUEST_ID).or_insert(id);
        }
        if self.hsts {
            headers.entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HSTS);
        }
        log_error_cause(res)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::domain::Origin;
    use crate::http::{CORS_ROUTES, HttpService};
    use crate::layers::hot::HotLayer;

    const PAGE: &str = "https://app.example";

    /// `/auth/token` (a CORS path) panics while polled, `/auth/userinfo` (one too) in `call`
    /// itself, `/own` sets its own headers.
    fn router(hsts: bool) -> HttpService {
        let origin = Origin::parse(PAGE).unwrap();
        let cors = Cors::new(&CORS_ROUTES, [&origin]);
        let panics_in_call =
            tower::service_fn(|_: Request| -> std::future::Ready<Result<Response, Infallible>> { panic!("in call") });
        let routes = Router::new()
            .route(
                "/auth/token",
                get(|| async {
                    panic!("in poll");
                    #[allow(unreachable_code)]
                    ()
                }),
            )
            .route_service("/auth/userinfo", panics_in_call)
            .route(
                "/own",
                get(|| async {
                    (
                        [
                            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
                            (header::STRICT_TRANSPORT_SECURITY, "max-age=1"),
                            (REQUEST_ID.clone(), "from-the-handler"),
                        ],
                        "own",
                    )
                }),
            );
        crate::http::outer_layers(routes, EdgeLayer::new(cors, hsts), HotLayer::none())
    }

    async fn send(router: HttpService, req: axum::http::request::Builder) -> Response {
        router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn assert_security_headers(res: &Response) {
        let h = res.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[tokio::test]
    async fn a_panic_becomes_a_server_error_with_every_header_of_an_answer() {
        for path in ["/auth/token", "/auth/userinfo"] {
            let req = axum::http::Request::get(path)
                .header(header::ORIGIN, PAGE)
                .header(&REQUEST_ID, "given-id");
            let res = send(router(true), req).await;
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_security_headers(&res);
            let h = res.headers();
            assert_eq!(
                h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
                PAGE,
                "a page can read even that 500"
            );
            assert_eq!(h[&REQUEST_ID], "given-id");
            assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], HSTS);
            let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
            assert_eq!(&body[..], br#"{"error":"server_error"}"#);
        }
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_a_uuid_and_the_handler_sees_it() {
        let seen = Router::new().route(
            "/id",
            get(|req: Request| async move { req.headers()[&REQUEST_ID].to_str().unwrap().to_owned() }),
        );
        let router = crate::http::outer_layers(seen, EdgeLayer::without_clients(), HotLayer::none());
        let res = send(router, axum::http::Request::get("/id")).await;
        let id = res.headers()[&REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert!(
            !res.headers().contains_key(header::STRICT_TRANSPORT_SECURITY),
            "plain http: no HSTS"
        );
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(body, id.as_bytes(), "the handler saw the id the answer carries");
    }

    #[tokio::test]
    async fn a_handlers_own_headers_stay() {
        let res = send(router(true), axum::http::Request::get("/own")).await;
        let h = res.headers();
        assert_eq!(h[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], "max-age=1");
        assert_eq!(h[&REQUEST_ID], "from-the-handler");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "the others are added");
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN), "not a CORS path");
    }

    #[tokio::test]
    async fn a_preflight_is_answered_at_the_edge_with_the_security_headers() {
        let req = axum::http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/auth/token")
            .header(header::ORIGIN, PAGE)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        let res = send(router(false), req).await;
        assert_eq!(
            res.status(),
            StatusCode::NO_CONTENT,
            "the panicking route is not called"
        );
        assert_security_headers(&res);
        assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAGE);
        assert!(res.headers().contains_key(&REQUEST_ID));
    }
}
