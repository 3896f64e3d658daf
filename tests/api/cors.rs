//! Browsers calling the token plane (docs/reference.md section 3, CORS), over a listening server: the
//! preflights, the headers on answers (errors and 503s included), the allowed origins (by default
//! the origins of the clients' redirect URIs, or their explicit `allowed_origins`), and the
//! endpoints that send no CORS header. `browser.rs` runs the same flow in Chromium.

use std::sync::Arc;

use authplane::Config;
use reqwest::{Method, Response, StatusCode};

use crate::helpers::*;
use crate::test_store::TestStore;

/// demo-spa's (and demo-app's) redirect URIs are on this origin.
const SPA_ORIGIN: &str = "http://127.0.0.1:9000";
/// other-app's redirect URIs are on this origin.
const OTHER_ORIGIN: &str = "http://127.0.0.1:9001";
const STRANGER: &str = "https://evil.example";

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn vary(res: &Response) -> Vec<String> {
    res.headers()
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

/// No header a CORS client could act on.
fn assert_no_cors(res: &Response, what: &str) {
    for (name, _) in res.headers() {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{what} sent {name}: {:?}",
            res.headers()
        );
    }
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization,content-type,dpop")
        .send()
        .await
        .unwrap()
}

/// The fixture with other-app's `allowed_origins` set explicitly.
fn config_with_other_origins(origins: &[&str]) -> Config {
    let list: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
    let marker = "client_id = \"other-app\"\n";
    assert!(fixture::TOML.contains(marker));
    let text = fixture::TOML.replace(marker, &format!("{marker}allowed_origins = [{}]\n", list.join(", ")));
    fixture::config_from(&text, |s| s.listen = Some("127.0.0.1:0".parse().unwrap())).unwrap()
}

#[tokio::test]
async fn a_preflight_from_a_client_origin_is_answered_204_with_the_policy() {
    let app = spawn_app().await;
    for (path, method, methods) in [
        ("/auth/token", "POST", "POST"),
        ("/auth/userinfo", "GET", "GET, POST"),
        ("/auth/revoke", "POST", "POST"),
    ] {
        let res = preflight(&app, path, SPA_ORIGIN, method).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            header(&res, "access-control-allow-origin").as_deref(),
            Some(SPA_ORIGIN),
            "{path}"
        );
        assert_eq!(
            header(&res, "access-control-allow-methods").as_deref(),
            Some(methods),
            "{path}"
        );
        let allowed = header(&res, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for h in ["authorization", "content-type", "dpop"] {
            assert!(allowed.split(", ").any(|a| a == h), "{path}: {h} in {allowed}");
        }
        assert!(header(&res, "access-control-max-age").is_some(), "{path}");
        assert_eq!(header(&res, "access-control-allow-credentials"), None, "{path}");
        assert!(vary(&res).contains(&"origin".to_owned()), "{path}");
        assert!(res.bytes().await.unwrap().is_empty(), "{path}: a 204 has no body");
    }
    // The metadata documents and the JWKS, from any origin at all.
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/auth/jwks",
    ] {
        let res = preflight(&app, path, STRANGER, "GET").await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            header(&res, "access-control-allow-origin").as_deref(),
            Some("*"),
            "{path}"
        );
        assert_eq!(
            header(&res, "access-control-allow-methods").as_deref(),
            Some("GET"),
            "{path}"
        );
        assert_eq!(header(&res, "access-control-allow-credentials"), None, "{path}");
    }
}

#[tokio::test]
async fn answers_to_a_client_origin_carry_cors_headers_errors_included() {
    let app = spawn_app().await;
    let check = |res: &Response, what: &str| {
        assert_eq!(
            header(res, "access-control-allow-origin").as_deref(),
            Some(SPA_ORIGIN),
            "{what}"
        );
        let exposed = header(res, "access-control-expose-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("www-authenticate") && exposed.contains("dpop-nonce"),
            "{what}: {exposed}"
        );
        assert_eq!(header(res, "access-control-allow-credentials"), None, "{what}");
        assert!(vary(res).contains(&"origin".to_owned()), "{what}");
    };
    let session = app.login().await;
    let code = app.code(&session, SPA, SPA_REDIRECT, "openid profile").await;
    let token = |form: Vec<(&'static str, String)>| {
        app.client
            .post(app.url("/auth/token"))
            .header("origin", SPA_ORIGIN)
            .form(&form)
            .send()
    };
    let res = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", SPA_REDIRECT.into()),
        ("client_id", SPA.into()),
        ("code_verifier", VERIFIER.into()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    check(&res, "a token answer");
    let tokens = json(res).await;

    let res = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", "not-a-code".into()),
        ("redirect_uri", SPA_REDIRECT.into()),
        ("client_id", SPA.into()),
        ("code_verifier", VERIFIER.into()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    check(&res, "a token error");
    assert_eq!(json(res).await["error"], "invalid_grant");

    let userinfo = |token: String| {
        app.client
            .get(app.url("/auth/userinfo"))
            .header("origin", SPA_ORIGIN)
            .bearer_auth(token)
            .send()
    };
    let res = userinfo(s(&tokens, "access_token")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    check(&res, "a userinfo answer");
    let res = userinfo("not-a-token".into()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    check(&res, "a userinfo 401");
    assert!(header(&res, "www-authenticate").unwrap().starts_with("Bearer"));

    let res = app
        .client
        .post(app.url("/auth/revoke"))
        .header("origin", SPA_ORIGIN)
        .form(&[("token", s(&tokens, "refresh_token")), ("client_id", SPA.into())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    check(&res, "a revocation answer");

    // A method the path is not routed for is still a 405 in the OAuth format, readable too.
    let res = app
        .client
        .get(app.url("/auth/token"))
        .header("origin", SPA_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    check(&res, "a 405");

    // The metadata: `*` for everyone, and nothing that varies.
    let res = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(header(&res, "access-control-allow-credentials"), None);
}

#[tokio::test]
async fn each_client_allows_the_origins_of_its_redirect_uris_by_default() {
    let app = spawn_app().await;
    for origin in [SPA_ORIGIN, OTHER_ORIGIN] {
        let res = preflight(&app, "/auth/token", origin, "POST").await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{origin}");
        assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(origin));
    }
    // The origin only: another port of the same host is another origin.
    let res = preflight(&app, "/auth/token", "http://127.0.0.1:9002", "POST").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn explicit_allowed_origins_replace_the_default() {
    let app = spawn_with(config_with_other_origins(&["https://partner.example"]), None).await;
    let res = preflight(&app, "/auth/userinfo", "https://partner.example", "GET").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("https://partner.example")
    );
    // other-app's redirect URIs' origin is no longer allowed; demo-spa's default still is.
    let res = preflight(&app, "/auth/userinfo", OTHER_ORIGIN, "GET").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_no_cors(&res, "a preflight from a replaced default");
    let res = preflight(&app, "/auth/userinfo", SPA_ORIGIN, "GET").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // And `[]` allows none.
    let app = spawn_with(config_with_other_origins(&[]), None).await;
    let res = preflight(&app, "/auth/token", OTHER_ORIGIN, "POST").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_origin_no_client_allows_gets_no_cors_headers() {
    let app = spawn_app().await;
    for origin in [STRANGER, "null", "http://127.0.0.1:9000/"] {
        let res = preflight(&app, "/auth/token", origin, "POST").await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{origin}");
        assert_no_cors(&res, "a preflight from a stranger");
        assert!(vary(&res).contains(&"origin".to_owned()));
        assert!(res.bytes().await.unwrap().is_empty(), "an empty 403");
    }
    let res = app
        .client
        .get(app.url("/auth/userinfo"))
        .header("origin", STRANGER)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_no_cors(&res, "an answer to a stranger");
    assert!(
        vary(&res).contains(&"origin".to_owned()),
        "the answer depends on Origin"
    );
    // Two Origin headers are no origin at all.
    let res = app
        .client
        .get(app.url("/auth/userinfo"))
        .header("origin", SPA_ORIGIN)
        .header("origin", SPA_ORIGIN)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_no_cors(&res, "an answer to two origins");
    // An OPTIONS that is no preflight (no Origin) is what it was: a 405 in the OAuth format.
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/auth/token"))
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(res).await["error"], "method_not_allowed");
}

#[tokio::test]
async fn login_authorize_and_the_operators_endpoints_send_no_cors_headers() {
    let app = spawn_app().await;
    let session = app.login().await;
    let challenge = authplane::crypto::pkce_challenge(VERIFIER);
    let authorize = format!(
        "/auth/authorize?response_type=code&client_id={SPA}&redirect_uri={SPA_REDIRECT}&scope=openid\
         &code_challenge={challenge}&code_challenge_method=S256"
    );
    let mut requests = vec![
        ("GET /auth/login", app.client.get(app.url("/auth/login"))),
        (
            "POST /auth/login",
            app.client
                .post(app.url("/auth/login"))
                .header("accept", "application/json")
                .form(&[("username", "alice"), ("password", "wonderland")]),
        ),
        (
            "GET /auth/authorize",
            app.client
                .get(app.url(&authorize))
                .header("cookie", format!("authplane_session={session}")),
        ),
        (
            "POST /auth/introspect",
            app.client
                .post(app.url("/auth/introspect"))
                .basic_auth(APP, Some(APP_SECRET))
                .form(&[("token", "x")]),
        ),
        ("GET /metrics", app.client.get(app.url("/metrics"))),
        ("GET /debug/health", app.client.get(app.url("/debug/health"))),
        ("GET /healthz", app.client.get(app.url("/healthz"))),
    ];
    for path in ["/auth/login", "/auth/authorize", "/auth/introspect", "/metrics"] {
        let req = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .header("access-control-request-method", "POST");
        requests.push(("a preflight", req));
    }
    for (what, req) in requests {
        let res = req.header("origin", SPA_ORIGIN).send().await.unwrap();
        assert_ne!(res.status(), StatusCode::NOT_FOUND, "{what}");
        assert_no_cors(&res, what);
        assert!(!vary(&res).contains(&"origin".to_owned()), "{what}");
    }
}

#[tokio::test]
async fn a_full_endpoint_still_answers_preflights_and_its_503_is_readable() {
    let store = Arc::new(TestStore::default());
    let cfg = test_config(|s| {
        s.max_inflight = Some(1);
        s.queue_capacity = Some(1);
    });
    let app = spawn_with(cfg, Some(store.clone())).await;
    store.hold();
    let mut running = Vec::new();
    for i in 0..2 {
        let req = app
            .client
            .get(app.url("/auth/userinfo"))
            .bearer_auth(format!("unknown-token-{i}"));
        running.push(tokio::spawn(req.send()));
    }
    store.until_waiting(1).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while app.health().await["queues"]["/auth/userinfo"]["waiting"] != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the endpoint is full");

    let res = preflight(&app, "/auth/userinfo", SPA_ORIGIN, "GET").await;
    assert_eq!(
        res.status(),
        StatusCode::NO_CONTENT,
        "a preflight takes no admission slot"
    );
    let res = app
        .client
        .get(app.url("/auth/userinfo"))
        .header("origin", SPA_ORIGIN)
        .bearer_auth("one-too-many")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(SPA_ORIGIN));
    assert_eq!(json(res).await["error"], "temporarily_unavailable");

    store.release();
    for r in running {
        assert_eq!(r.await.unwrap().unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}
