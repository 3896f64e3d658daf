//! Shared by the service and HTTP-stack benches: an `Application` on the in-memory store with
//! the demo users and clients hashed with cheap argon2 parameters (bench fixtures only), and a
//! login through the router.
#![allow(dead_code)]

use std::net::SocketAddr;

use authplane::config::{ClientConfig, Config, FileConfig, Settings, TokenEndpointAuthMethod, UserConfig};
use authplane::crypto::{self, Argon2Params};
use authplane::domain::GrantType;
use authplane::{Application, Options};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const APP: &str = "demo-app";
pub const APP_SECRET: &str = "demo-secret";
pub const APP_REDIRECT: &str = "http://127.0.0.1:9000/callback";
/// RFC 7636 appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// `Basic base64(demo-app:demo-secret)`.
pub const APP_BASIC: &str = "Basic ZGVtby1hcHA6ZGVtby1zZWNyZXQ=";

pub fn config() -> Config {
    let cheap = |s: &str| crypto::hash_password(s, Argon2Params::cheap()).unwrap();
    let file = FileConfig {
        settings: Settings::default(),
        users: vec![UserConfig {
            username: "alice".into(),
            password_hash: cheap("wonderland"),
            sub: "u-alice".into(),
            name: Some("Alice Liddell".into()),
            email: Some("alice@example.com".into()),
            email_verified: true,
        }],
        clients: vec![ClientConfig {
            client_id: APP.into(),
            secret_hash: Some(cheap(APP_SECRET)),
            redirect_uris: vec![APP_REDIRECT.into()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
            ],
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            token_endpoint_auth_method: Some(TokenEndpointAuthMethod::ClientSecretBasic),
            require_pkce: false,
        }],
    };
    let settings = Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Settings::default()
    };
    Config::resolve(settings, file).unwrap()
}

/// The application on the in-memory store with the system clock. Its listener is bound but never
/// served: benches call the services or the router directly.
pub fn app(rt: &tokio::runtime::Runtime) -> Application {
    rt.block_on(Application::build_with(config(), Options::default()))
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
pub async fn login(router: &Router) -> String {
    let req = request(
        Request::post("/auth/login")
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        Body::from("username=alice&password=wonderland"),
    );
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200, "login failed");
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let rest = v.to_str().ok()?.strip_prefix("authplane_session=")?;
            Some(rest.split(';').next()?.to_owned())
        })
        .expect("a session cookie");
    let _ = res.into_body().collect().await;
    cookie
}

/// The code from a Location header.
pub fn code_of(location: &str) -> String {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code")
}
