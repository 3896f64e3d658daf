//! Entry points for the fuzz targets (`fuzz/`) and their regression tests: each feeds arbitrary
//! bytes to a parser that touches client input and panics only if an invariant breaks (a parser
//! itself must never panic; the HTTP entry point must never answer 5xx or a non-OAuth error
//! body). Not part of the server; public so that `fuzz/` and `tests/` share one definition.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use tower::ServiceExt;

use crate::config::{ClientConfig, Config, FileConfig, Settings, parse_file};
use crate::domain::{CodeChallenge, CodeVerifier, GrantType, Scope};
use crate::http::extract::{Params, bearer_token, client_credentials, cookie};

/// Splits `data` at the first NUL: (before, after).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Form bodies and query strings.
pub fn form(data: &[u8]) {
    if let Ok(p) = Params::parse(data) {
        let _ = p.reject_duplicates(&["grant_type", "code", "client_id"]);
        // Whatever was decoded is valid UTF-8 and non-empty.
        for name in ["grant_type", "code", "client_id", "redirect_uri", "scope", "state"] {
            assert!(p.get(name).is_none_or(|v| !v.is_empty()));
        }
    }
}

/// The Authorization header (Basic or Bearer) with a form body: `header NUL body`.
pub fn authorization(data: &[u8]) {
    let (value, body) = split(data);
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value.clone());
    headers.insert(header::COOKIE, value);
    let _ = bearer_token(&headers);
    let _ = cookie(&headers, "authplane_session");
    if let Ok(mut params) = Params::parse(body) {
        let _ = client_credentials(&headers, &mut params);
    }
}

/// Scope strings, PKCE challenges and verifiers, grant types.
pub fn protocol_values(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Some(scope) = Scope::parse(&s) {
        // Display and parse round-trip.
        assert_eq!(Scope::parse(&scope.to_string()), Some(scope));
    }
    if let Some(c) = CodeChallenge::parse(&s) {
        assert_eq!(c.as_str().len(), 43);
    }
    if let Some(v) = CodeVerifier::parse(&s) {
        assert!((43..=128).contains(&v.as_str().len()));
    }
    let _ = GrantType::parse(&s);
}

/// A redirect URI as an operator would register it.
pub fn redirect_uri(data: &[u8]) {
    let uri = String::from_utf8_lossy(data).into_owned();
    let client = ClientConfig {
        client_id: "c".into(),
        secret_hash: None,
        redirect_uris: vec![uri],
        grant_types: vec![GrantType::AuthorizationCode],
        scopes: vec!["openid".into()],
        token_endpoint_auth_method: None,
        require_pkce: false,
        allowed_origins: None,
    };
    let file = FileConfig {
        settings: Settings::default(),
        users: vec![],
        clients: vec![client],
    };
    let _ = Config::resolve(Settings::default(), file);
}

/// The config file.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = parse_file(std::path::Path::new("fuzz.toml"), &text) {
        let _ = Config::resolve(Settings::default(), file);
    }
}

const PATHS: &[(&str, &str)] = &[
    ("GET", "/auth/authorize"),
    ("POST", "/auth/token"),
    ("POST", "/auth/login"),
    ("POST", "/auth/revoke"),
    ("POST", "/auth/introspect"),
    ("POST", "/auth/userinfo"),
    ("GET", "/auth/userinfo"),
    ("GET", "/auth/login"),
];

/// One request through the real router: `selector authorization NUL query-or-body`. The answer
/// must be below 500, and its body empty or a JSON object with an `error` string when it is an
/// error.
pub async fn http(router: Router, data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (method, path) = PATHS[usize::from(selector) % PATHS.len()];
    let (auth, payload) = split(rest);
    let mut req = Request::builder().method(method);
    req = if method == "GET" {
        let query = String::from_utf8_lossy(payload).replace(['#', ' '], "");
        req.uri(format!("{path}?{query}"))
    } else {
        req.uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    };
    if let Ok(v) = HeaderValue::from_bytes(auth) {
        if !auth.is_empty() {
            req = req.header(header::AUTHORIZATION, v);
        }
    }
    let body = if method == "GET" {
        Body::empty()
    } else {
        Body::from(payload.to_vec())
    };
    let Ok(req) = req.body(body) else {
        return;
    };
    let Ok(res) = router.oneshot(req).await;
    let status = res.status();
    assert!(status.as_u16() < 500, "{method} {path} answered {status}");
    if status.is_client_error() {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap_or_default();
        if !bytes.is_empty() && !bytes.starts_with(b"<!doctype html>") {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            assert!(
                v["error"].is_string(),
                "{method} {path} {status}: not an OAuth error body"
            );
        }
    }
}

/// A small configuration for fuzzing the router: alice and the two demo clients, with cheap
/// argon2 parameters (fixtures only).
pub fn fuzz_config() -> anyhow::Result<Config> {
    use crate::config::{TokenEndpointAuthMethod, UserConfig};
    use crate::crypto::{Argon2Params, hash_password};
    let hash = |s: &str| hash_password(s, Argon2Params::cheap()).map_err(|e| anyhow::anyhow!("{e}"));
    let file = FileConfig {
        settings: Settings::default(),
        users: vec![UserConfig {
            username: "alice".into(),
            password_hash: hash("wonderland")?,
            sub: "u-alice".into(),
            name: None,
            email: None,
            email_verified: false,
        }],
        clients: vec![
            ClientConfig {
                client_id: "demo-app".into(),
                secret_hash: Some(hash("demo-secret")?),
                redirect_uris: vec!["http://127.0.0.1:9000/callback".into()],
                grant_types: vec![
                    GrantType::AuthorizationCode,
                    GrantType::RefreshToken,
                    GrantType::ClientCredentials,
                ],
                scopes: vec!["openid".into(), "profile".into()],
                token_endpoint_auth_method: Some(TokenEndpointAuthMethod::ClientSecretBasic),
                require_pkce: false,
                allowed_origins: None,
            },
            ClientConfig {
                client_id: "demo-spa".into(),
                secret_hash: None,
                redirect_uris: vec!["http://127.0.0.1:9000/spa".into()],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                scopes: vec!["openid".into()],
                token_endpoint_auth_method: Some(TokenEndpointAuthMethod::None),
                require_pkce: false,
                allowed_origins: None,
            },
        ],
    };
    let settings = Settings {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..Settings::default()
    };
    Ok(Config::resolve(settings, file)?)
}
