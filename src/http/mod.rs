//! The HTTP surface: routes, extractors and wire types. Handlers parse, call one service and map
//! the result; nothing here touches a store, a cache or a credential's hash.

use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, get, post};
use tower::Layer;

use crate::error::ApiError;
use crate::layers::admission::Admission;
use crate::layers::cors::{Cors, CorsRoute, Origins};
use crate::layers::edge::{Edge, EdgeLayer};
use crate::layers::hot::{HandlerFuture, Hot, HotEntry, HotLayer};
use crate::layers::metrics::TrackLayer;
use crate::state::AppState;

pub mod admin;
pub mod authorize;
pub mod consent;
pub mod extract;
pub mod health;
pub mod login;
pub mod logout;
pub mod metadata;
pub mod pages;
pub mod par;
pub mod token;
pub mod userinfo;

/// Room for a hot answer's JSON: a token answer with a JWT access token, an introspection answer.
/// (axum's `Json` starts at 128 bytes and grows to fit, copying what it wrote each time.)
const JSON_ROOM: usize = 1024;

/// Room for a JSON answer's headers: its content type, its caching headers and the ones the
/// edge adds ([`crate::layers::edge`]), so that none of them makes the map grow.
const HEADER_ROOM: usize = 12;

/// A JSON answer, as axum's `Json` makes it, written into a buffer sized for the hot answers.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    use bytes::BufMut;
    let mut body = bytes::BytesMut::with_capacity(JSON_ROOM).writer();
    if let Err(e) = serde_json::to_writer(&mut body, value) {
        return ApiError::internal(e).into_response();
    }
    let mut res = axum::response::Response::new(axum::body::Body::from(body.into_inner().freeze()));
    let h = res.headers_mut();
    h.reserve(HEADER_ROOM);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// An endpoint whose latency series is recorded in front of the router ([`crate::layers::hot`]):
/// one of [`HOT_ROUTES`] (with its own [`Admission`], and its series from start-up) or of
/// [`TIMED_ROUTES`]. The hot layer calls its handler itself; the router has it too (for HEAD,
/// and for the 405 of any other method), made from the same function ([`HotRoute::method_router`]).
pub struct HotRoute {
    pub path: &'static str,
    /// The methods `handler` serves (a GET route serves HEAD too, listed); the first is a hot
    /// endpoint's main one, whose latency series is registered at start-up so dashboards never
    /// meet a missing series. The others get no admission and no series: the router answers
    /// them 405.
    pub methods: &'static [Method],
    /// The handler, as axum calls it: `Handler::call` of the endpoint's `async fn`.
    pub handler: fn(Request, AppState) -> HandlerFuture,
}

impl HotRoute {
    /// The route's handler on the router, for each of its methods (HEAD with GET's).
    fn method_router(&self) -> MethodRouter<AppState> {
        let handler = self.handler;
        let call = move |State(state): State<AppState>, req: Request| handler(req, state);
        // Every method of the tables is a standard one, which `MethodFilter` has (the API tests
        // send each table's methods and expect them served).
        self.methods
            .iter()
            .filter(|m| **m != Method::HEAD)
            .filter_map(|m| MethodFilter::try_from(m.clone()).ok())
            .fold(MethodRouter::new(), |router, filter| router.on(filter, call))
    }

    /// The hot layer's entry for the route, with `admission` (a hot route's) and `state`.
    fn entry(&self, admission: Option<Admission>, state: &AppState) -> HotEntry {
        let (handler, state) = (self.handler, state.clone());
        HotEntry {
            path: self.path,
            methods: self.methods,
            admission,
            handler: Box::new(move |req| handler(req, state.clone())),
        }
    }
}

/// The hot endpoints, declared once: the router, the per-route admissions ([`Admissions`]) and
/// the start-up latency series are all derived from this table.
pub const HOT_ROUTES: [HotRoute; 4] = [
    HotRoute {
        path: "/auth/authorize",
        methods: &[Method::GET, Method::HEAD],
        handler: |req, state| Handler::call(authorize::authorize, req, state),
    },
    HotRoute {
        path: "/auth/token",
        methods: &[Method::POST],
        handler: |req, state| Handler::call(token::token, req, state),
    },
    HotRoute {
        path: "/auth/userinfo",
        methods: &[Method::GET, Method::POST, Method::HEAD],
        handler: |req, state| Handler::call(userinfo::userinfo, req, state),
    },
    // Client authentication and a store write per request, like the token endpoint.
    HotRoute {
        path: "/auth/par",
        methods: &[Method::POST],
        handler: |req, state| Handler::call(par::par, req, state),
    },
];

/// The endpoints that resource servers and clients call per API request or per token, timed in
/// front of the router like [`HOT_ROUTES`] but without admission control (not a hot endpoint:
/// no queue, never shed): the `route_layer` that times the other routes is one more boxed
/// service, cloned with everything below it per request, and one more boxed future.
pub const TIMED_ROUTES: [HotRoute; 2] = [
    HotRoute {
        path: "/auth/introspect",
        methods: &[Method::POST],
        handler: |req, state| Handler::call(token::introspect, req, state),
    },
    HotRoute {
        path: "/auth/revoke",
        methods: &[Method::POST],
        handler: |req, state| Handler::call(token::revoke, req, state),
    },
];

/// The token plane that browser apps may call from their own origin (docs/reference.md section 3), and
/// who may: the policy of [`crate::layers::cors`]. Login, authorize, introspection (a resource
/// server's, with a confidential client's secret no page should hold) and the operators'
/// endpoints are not in it, and send no CORS header.
pub const CORS_ROUTES: [CorsRoute; 6] = [
    CorsRoute {
        path: "/auth/token",
        methods: "POST",
        origins: Origins::Clients,
    },
    CorsRoute {
        path: "/auth/userinfo",
        methods: "GET, POST",
        origins: Origins::Clients,
    },
    CorsRoute {
        path: "/auth/revoke",
        methods: "POST",
        origins: Origins::Clients,
    },
    CorsRoute {
        path: "/.well-known/oauth-authorization-server",
        methods: "GET",
        origins: Origins::Any,
    },
    CorsRoute {
        path: "/.well-known/openid-configuration",
        methods: "GET",
        origins: Origins::Any,
    },
    // Browser relying parties verify ID tokens against it.
    CorsRoute {
        path: "/auth/jwks",
        methods: "GET",
        origins: Origins::Any,
    },
];

/// One [`Admission`] per entry of [`HOT_ROUTES`], in its order.
#[derive(Clone)]
pub struct Admissions(Vec<Admission>);

impl Admissions {
    /// `admission(path)` for each hot route.
    pub fn new(admission: impl FnMut(&'static str) -> Admission) -> Self {
        Self(HOT_ROUTES.iter().map(|r| r.path).map(admission).collect())
    }

    pub fn all(&self) -> &[Admission] {
        &self.0
    }
}

/// The public router. With `management` false, `/metrics` and `/debug/health` are not on it:
/// they are served by [`management_router`] on `--management-listen` instead.
pub fn router(state: AppState, admissions: &Admissions, management: bool) -> HttpService {
    // A preflight names no client: the token plane allows the origins of them all.
    let cors = Cors::new(
        &CORS_ROUTES,
        state.clients.configured().flat_map(|c| &c.allowed_origins),
    );
    let track = TrackLayer::new(state.metrics.clone());
    // The latency series of a hot or timed route, a hot route's admission and the call of its
    // handler are in front of the router (`HotLayer`); the router keeps the routes for HEAD and
    // the 405s.
    let hot = HOT_ROUTES
        .iter()
        .chain(&TIMED_ROUTES)
        .fold(Router::new(), |router, route| {
            router.route(route.path, route.method_router())
        });
    let hot_layer = HotLayer::new(
        HOT_ROUTES
            .iter()
            .zip(admissions.all())
            .map(|(route, admission)| route.entry(Some(admission.clone()), &state))
            .chain(TIMED_ROUTES.iter().map(|route| route.entry(None, &state)))
            .collect(),
        track.clone(),
    );
    let routes = Router::new()
        .route("/auth/login", get(login::page).post(login::login))
        .route("/auth/logout", post(logout::logout))
        .route("/auth/consent", get(consent::page).post(consent::decide))
        .route(
            "/auth/end-session",
            get(logout::end_session_get).post(logout::end_session_post),
        )
        .route("/.well-known/oauth-authorization-server", get(health::metadata))
        .route("/.well-known/openid-configuration", get(health::metadata))
        .route("/auth/jwks", get(metadata::jwks))
        .route("/admin/keys/rotate", post(admin::rotate_keys))
        .route("/admin/users", get(admin::list_users).post(admin::create_user))
        .route(
            "/admin/users/{sub}",
            get(admin::get_user)
                .patch(admin::update_user)
                .delete(admin::delete_user),
        )
        .route("/admin/clients", get(admin::list_clients))
        .route(
            "/admin/clients/{client_id}",
            get(admin::get_client).delete(admin::delete_client),
        )
        .route("/auth/register", post(admin::register))
        .route(
            "/auth/register/{client_id}",
            get(admin::read_registration)
                .put(admin::update_registration)
                .delete(admin::delete_registration),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    let routes = if management { with_management(routes) } else { routes };
    let https = state.web.secure_cookie;
    let routes = routes.route_layer(track).merge(hot).with_state(state);
    outer_layers(routes, EdgeLayer::new(cors, https), hot_layer)
}

fn with_management(routes: Router<AppState>) -> Router<AppState> {
    routes
        .route("/debug/health", get(health::debug_health))
        .route("/metrics", get(health::metrics))
}

/// `/metrics`, `/debug/health` and the probes, for `--management-listen`: an address operators
/// keep off the public network (as Keycloak's management port and Hydra's admin port).
pub fn management_router(state: AppState) -> HttpService {
    let routes = with_management(Router::new())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state);
    outer_layers(routes, EdgeLayer::without_clients(), HotLayer::none())
}

/// What a listener serves: the routes inside the hot routes' layer, inside the edge.
pub type HttpService = Edge<Hot<Router>>;

/// The layers every route shares: the edge ([`EdgeLayer`]: request id, the request span, CORS,
/// the panic catcher, the security headers, the logging of error causes) around the OAuth-format
/// 404 and 405 answers and the routes. The benchmark baseline goes through exactly these.
///
/// The edge wraps the router, not each of its routes (`Router::layer`): a layer on the routes is
/// one more boxed service per route, which axum clones with everything below it on every
/// request, and one more boxed future.
pub fn outer_layers(router: Router, edge: EdgeLayer, hot: HotLayer) -> HttpService {
    edge.layer(
        hot.layer(
            router
                .fallback(|| async { ApiError::NotFound })
                .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed }),
        ),
    )
}

/// The benchmark baseline: a constant small JSON answer behind the same stack as the hot
/// endpoints (latency metrics, admission control, outer layers), without any auth logic. Not
/// mounted by the server; the load tool serves it to measure the stack's own ceiling.
pub fn baseline_router(metrics: crate::telemetry::Metrics, admission: Admission) -> HttpService {
    const PATH: &str = "/baseline";
    async fn status() -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({ "status": "ok" }))
    }
    let router = Router::new().route(PATH, get(status));
    let hot = HotLayer::new(
        vec![HotEntry {
            path: PATH,
            methods: &[Method::GET, Method::HEAD],
            admission: Some(admission),
            handler: Box::new(|req| Handler::call(status, req, ())),
        }],
        TrackLayer::new(metrics),
    );
    outer_layers(router, EdgeLayer::without_clients(), hot)
}
