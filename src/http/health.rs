//! `/healthz`, `/readyz`, `/debug/health`, `/metrics`, and the metadata documents.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::health::HealthService;
use crate::state::WebConfig;
use crate::telemetry::Metrics;

pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn readyz(State(health): State<HealthService>) -> Response {
    if health.ready().await {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "temporarily_unavailable", "status": "not_ready" })),
        )
            .into_response()
    }
}

pub async fn debug_health(State(health): State<HealthService>) -> Response {
    Json(health.report().await).into_response()
}

pub async fn metrics(State(health): State<HealthService>, State(metrics): State<Metrics>) -> Response {
    health.refresh_gauges();
    let mut res = metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// RFC 8414 (served at both well-known paths).
pub async fn metadata(State(web): State<Arc<WebConfig>>) -> Response {
    let mut res = web.metadata.clone().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
