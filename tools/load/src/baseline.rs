//! `serve-baseline`: the server stack's own ceiling. It serves `authplane::baseline_router`
//! (a constant small JSON behind the latency metrics, the admission control and the outer layers
//! of the real server) with the same tracing subscriber, so that the difference between the
//! two is the auth logic alone, but for the connection: this is `axum::serve`, where `authplane
//! serve` has its own loop (`authplane::server`: connection limits and the header and idle
//! deadlines, a timer and two clock reads per request).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use authplane::Admission;
use authplane::config::LogFormat;
use authplane::telemetry::Metrics;
use axum::ServiceExt as _;
use tokio::net::TcpListener;

use crate::target::loopback_listen;

/// As long as the server's default `--request-timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listen: SocketAddr, max_inflight: usize, queue_capacity: usize) -> anyhow::Result<ExitCode> {
    loopback_listen(listen)?;
    // No OTLP endpoint, so nothing is built that may not be built inside the runtime.
    let _guard = authplane::telemetry::init_tracing(LogFormat::Text, None)?;
    let metrics = Metrics::new();
    let admission = Admission::new("/baseline", max_inflight, queue_capacity, REQUEST_TIMEOUT, &metrics);
    let router = authplane::baseline_router(metrics, admission);
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // The same line as the server's, so the same scripts find the address.
    tracing::info!(addr = %addr, "listening");
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await?;
    tracing::info!("baseline server stopped");
    Ok(ExitCode::SUCCESS)
}

/// `serve-hello`: the HTTP stack's ceiling, what a user compares a server with: a bare axum
/// handler answering the same small JSON on `/baseline`, with no layer, no tracing subscriber and
/// plain `axum::serve`. `authplane-load baseline` drives it like `serve-baseline`.
pub async fn serve_hello(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    loopback_listen(listen)?;
    let router = axum::Router::new().route(
        "/baseline",
        axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
    );
    let listener = TcpListener::bind(listen).await?;
    // The scripts read this line for the address (the other servers log it through tracing).
    println!("listening addr={}", listener.local_addr()?);
    axum::serve(listener, router).with_graceful_shutdown(shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT.
pub(crate) async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process still dies on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
