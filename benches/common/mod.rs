//! Shared by the benches: the criterion settings, the runtime and the timing loops of the async
//! benches, and (for the service and HTTP-stack benches) an `Application` on the in-memory store
//! with the test kit's fixture (cheap argon2 parameters), and a login through the router. Each
//! bench uses only some of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authplane::HttpService;
use authplane::{Application, Options};
use authplane_testkit::fixture::{ALICE, ALICE_PASSWORD};
use authplane_testkit::oauth;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// The criterion settings of every bench: short runs (0.5 s warm-up, 2 s measurement) of
/// `sample_size` samples.
pub fn criterion(sample_size: usize) -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(sample_size)
}

/// The single-threaded runtime the async benches run their futures on.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Benches `step` as `name`: `iters` awaited calls in a row on `rt`, timed as a whole.
pub fn bench_async(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, name: &str, mut step: impl AsyncFnMut()) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    step().await;
                }
                start.elapsed()
            })
        })
    });
}

/// As [`bench_async`], but each call of `step` takes its own input, all made by `input` before
/// the clock starts.
pub fn bench_async_with<T>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    mut input: impl FnMut() -> T,
    mut step: impl AsyncFnMut(T),
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut inputs: Vec<T> = (0..iters).map(|_| input()).collect();
            rt.block_on(async {
                let start = Instant::now();
                // Drained, so the vector is freed after the clock stops.
                for x in inputs.drain(..) {
                    step(x).await;
                }
                start.elapsed()
            })
        })
    });
}

/// The application on the in-memory store with the system clock. Its listener is bound but never
/// served: benches call the services or the router directly.
pub fn app(rt: &Runtime) -> Application {
    rt.block_on(Application::build_with(
        authplane_testkit::test_config(|_| {}),
        Options::default(),
    ))
    .unwrap()
}

/// A request as the server sees it, with the peer address `axum::serve` would attach.
pub fn request(builder: axum::http::request::Builder, body: Body) -> Request<Body> {
    let mut req = builder.body(body).unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// Logs alice in through the router and returns the session cookie's value.
pub async fn login(router: &HttpService) -> String {
    let req = request(
        Request::post("/auth/login")
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        Body::from(format!("username={ALICE}&password={ALICE_PASSWORD}")),
    );
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200, "login failed");
    let cookie = oauth::session_cookie(res.headers()).expect("a session cookie");
    let _ = res.into_body().collect().await;
    cookie
}

/// The code from a Location header.
pub fn code_of(location: &str) -> String {
    oauth::query_param(location, "code").expect("a code")
}

/// `criterion_group!` and `criterion_main!` with the project's criterion settings: every bench
/// file ends with `common::bench_main!(sample_size, targets...)`.
macro_rules! bench_main {
    ($sample_size:expr, $($target:path),+ $(,)?) => {
        criterion::criterion_group! {
            name = benches;
            config = $crate::common::criterion($sample_size);
            targets = $($target),+
        }
        criterion::criterion_main!(benches);
    };
}
pub(crate) use bench_main;
