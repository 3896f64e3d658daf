//! The HTTP surface: routes, extractors and wire types. Handlers parse, call one service and map
//! the result; nothing here touches a store, a cache or a credential's hash.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::layers::metrics::{HttpMetrics, track};
use crate::layers::overload::{Admission, admit};
use crate::state::AppState;

pub mod authorize;
pub mod extract;
pub mod health;
pub mod login;
pub mod metadata;
pub mod token;
pub mod userinfo;

/// Admission control for the three hot endpoints.
#[derive(Clone)]
pub struct HotRoutes {
    pub authorize: Admission,
    pub token: Admission,
    pub userinfo: Admission,
}

impl HotRoutes {
    pub fn all(&self) -> Vec<Admission> {
        vec![self.authorize.clone(), self.token.clone(), self.userinfo.clone()]
    }
}

/// Content-Security-Policy for everything we serve: the login page needs only its inline style.
/// No `form-action`: browsers apply it to the redirect chain after the login post, which ends at
/// the client's redirect_uri (CONTRACT section 3).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: AppState, hot: &HotRoutes) -> Router {
    let shed = |a: &Admission| from_fn_with_state(a.clone(), admit);
    let routes = Router::new()
        .route("/auth/login", get(login::page).post(login::login))
        .route("/auth/logout", post(login::logout))
        .route("/auth/authorize", get(authorize::authorize).layer(shed(&hot.authorize)))
        .route("/auth/token", post(token::token).layer(shed(&hot.token)))
        .route(
            "/auth/userinfo",
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                .layer(shed(&hot.userinfo)),
        )
        .route("/auth/revoke", post(token::revoke))
        .route("/auth/introspect", post(token::introspect))
        .route("/.well-known/oauth-authorization-server", get(health::metadata))
        .route("/.well-known/openid-configuration", get(health::metadata))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/debug/health", get(health::debug_health))
        .route("/metrics", get(health::metrics))
        .route_layer(from_fn_with_state(HttpMetrics::new(state.metrics.clone()), track))
        .with_state(state);
    outer_layers(routes)
}

/// The layers every route shares, outermost first: request id (set, then propagated as
/// `X-Request-Id`), the request span, the panic catcher, the security headers; and the OAuth-format
/// 404 and 405 answers. The benchmark baseline goes through exactly these.
pub fn outer_layers(router: Router) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    router
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The path only: query strings can carry state and codes.
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("handler panicked");
                    ApiError::Internal(anyhow::anyhow!("panic")).into_response()
                }))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                )),
        )
}

/// The benchmark baseline: a constant small JSON answer behind the same stack as the hot
/// endpoints (latency metrics, admission control, outer layers), without any auth logic. Not
/// mounted by the server; the load tool serves it to measure the stack's own ceiling.
pub fn baseline_router(metrics: crate::telemetry::Metrics, admission: Admission) -> Router {
    let router = Router::new()
        .route(
            "/baseline",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) })
                .layer(from_fn_with_state(admission, admit)),
        )
        .route_layer(from_fn_with_state(HttpMetrics::new(metrics), track));
    outer_layers(router)
}
