//! Whole requests through the router with tower's `oneshot` (everything but the socket and HTTP/1
//! parsing): the baseline router against the hot endpoints, and a bare axum route without any
//! layer, so the cost of the shared stack and of the auth logic can be told apart. Each runs three
//! times: without a tracing subscriber, with the server's own (fmt at `info`, written to a sink,
//! the request span made when something logs inside the request), because the server always
//! runs with one, and with that log making the request span for every request.
//! `cargo bench --bench http_stack`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use authplane::Admission;
use authplane::telemetry::Metrics;
use authplane_testkit::{APP, APP_BASIC, APP_REDIRECT, VERIFIER};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::response::Response;
use axum::routing::get;
use criterion::{BenchmarkGroup, Criterion, black_box, measurement::WallTime};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

mod common;

use common::{bench_async, request};

/// Sends `make()` through `router` and reads the whole answer, `iters` times.
fn run<S>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    router: &S,
    expect: u16,
    make: impl Fn() -> Request<Body>,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    bench_async(g, rt, name, async || {
        let res = router.clone().oneshot(make()).await.unwrap();
        assert_eq!(res.status(), expect, "{name}");
        black_box(res.into_body().collect().await.unwrap().to_bytes());
    });
}

/// A token request from the demo client, authenticated with HTTP Basic.
fn token_request(form: impl Into<Body>) -> Request<Body> {
    request(
        Request::post("/auth/token")
            .header(header::AUTHORIZATION, APP_BASIC)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        form.into(),
    )
}

/// An authorization request from the demo client, in alice's session.
fn authorize_request(uri: &str, session: &str) -> Request<Body> {
    request(
        Request::get(uri).header(header::COOKIE, authplane_testkit::oauth::session_header(session)),
        Body::empty(),
    )
}

fn stack_benches(c: &mut Criterion) {
    let rt = common::runtime();
    stack_group(c, &rt, "http_no_subscriber");

    // The server's subscriber without an OTLP exporter: its text log at info (here into a sink),
    // the filter the subscriber's own, the request span made when something inside the request
    // logs (`telemetry::RequestSpans`, as `init_tracing` sets it up); then the same log with the
    // span made for every request (as with an OTLP exporter or span directives in `RUST_LOG`).
    let subscriber = || {
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO))
            .with(authplane::telemetry::text_layer(std::io::sink, false))
    };
    for (name, dispatch) in [
        (
            "http_server_subscriber",
            tracing::Dispatch::new(authplane::telemetry::RequestSpans::new(subscriber())),
        ),
        (
            "http_server_subscriber_eager_span",
            tracing::Dispatch::new(subscriber()),
        ),
    ] {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        stack_group(c, &rt, name);
    }
}

/// The group `name` of the requests below, on an application of its own: a group issues
/// client_credentials tokens by the hundred thousand, and three groups' worth would fill the
/// memory store (`--memory-store-capacity`, then 503s).
fn stack_group(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str) {
    let app = common::app(rt);
    let router = app.router();
    let session = rt.block_on(common::login(&router));
    let challenge = authplane::crypto::pkce_challenge(VERIFIER);
    let redirect: String = url::form_urlencoded::byte_serialize(APP_REDIRECT.as_bytes()).collect();
    let authorize_uri = format!(
        "/auth/authorize?response_type=code&client_id={APP}&redirect_uri={redirect}&scope=openid%20profile%20email&state=s&code_challenge={challenge}&code_challenge_method=S256"
    );
    let access = rt.block_on(async {
        let res = router
            .clone()
            .oneshot(token_request("grant_type=client_credentials"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let _ = res.into_body().collect().await;
        // A user token for userinfo: authorize, then the code grant.
        let res = router
            .clone()
            .oneshot(authorize_request(&authorize_uri, &session))
            .await
            .unwrap();
        let code = common::code_of(res.headers()[header::LOCATION].to_str().unwrap());
        let body = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={redirect}&code_verifier={}",
            VERIFIER
        );
        let res = router.clone().oneshot(token_request(body)).await.unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    });

    let metrics = Metrics::new();
    let admission = Admission::new("/baseline", 512, 1024, Duration::from_secs(10), &metrics);
    let baseline = authplane::baseline_router(metrics, admission);
    let bare = Router::new().route(
        "/baseline",
        get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
    );

    let benches = |g: &mut BenchmarkGroup<'_, WallTime>| {
        run(g, rt, "bare_axum_route", &bare, 200, || {
            request(Request::get("/baseline"), Body::empty())
        });
        run(g, rt, "baseline_router", &baseline, 200, || {
            request(Request::get("/baseline"), Body::empty())
        });
        run(g, rt, "userinfo", &router, 200, || {
            request(
                Request::get("/auth/userinfo").header(header::AUTHORIZATION, format!("Bearer {access}")),
                Body::empty(),
            )
        });
        // Introspection of the user's token by its client (a cached secret, the token, its
        // grant, the user and the client from the caches).
        run(g, rt, "introspect", &router, 200, || {
            request(
                Request::post("/auth/introspect")
                    .header(header::AUTHORIZATION, APP_BASIC)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
                format!("token={access}").into(),
            )
        });
        run(g, rt, "token_client_credentials", &router, 200, || {
            token_request("grant_type=client_credentials")
        });
        run(g, rt, "authorize", &router, 302, || {
            authorize_request(&authorize_uri, &session)
        });
    };
    let mut g = c.benchmark_group(name);
    benches(&mut g);
    g.finish();
}

/// The request span (three fields, entered once, closed), under a text fmt layer at `info`
/// writing nowhere: its fields as `%` values with tracing-subscriber's `DefaultFields` and with
/// `PlainFields`, and as `layers::edge` makes it (`&str` values) under the server's text log
/// (`telemetry::text_layer`, whose `RequestSpanFields` writes them): the same work in the same
/// run, so the differences are the formatters'.
fn span_benches(c: &mut Criterion) {
    fn edge_span() {
        const EDGE: &str = authplane::telemetry::REQUEST_SPAN.0;
        let (id, method, path) = ("0b6c3d1e-5f4a-4b2c-9d8e-7f6a5b4c3d2e", "POST", "/auth/introspect");
        let span = tracing::info_span!(target: EDGE, "request", request_id = id, method, path);
        let _entered = span.enter();
        black_box(&span);
    }
    fn request_span() {
        let id = "0b6c3d1e-5f4a-4b2c-9d8e-7f6a5b4c3d2e";
        let span = tracing::info_span!("request", request_id = %id, method = %"POST", path = %"/auth/introspect");
        let _entered = span.enter();
        black_box(&span);
    }
    fn with_fields<F>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, fields: F)
    where
        F: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(fields)
            .with_writer(std::io::sink)
            .with_ansi(false)
            .with_filter(tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || g.bench_function(name, |b| b.iter(request_span)));
    }
    let mut g = c.benchmark_group("request_span");
    with_fields(
        &mut g,
        "default_fields",
        tracing_subscriber::fmt::format::DefaultFields::new(),
    );
    with_fields(&mut g, "plain_fields", authplane::telemetry::PlainFields);
    let layer = authplane::telemetry::text_layer(std::io::sink, false)
        .with_filter(tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        g.bench_function("request_span_fields", |b| b.iter(edge_span))
    });
    g.finish();
}

common::bench_main!(20, stack_benches, span_benches);
