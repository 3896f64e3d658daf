//! POST /auth/login, GET /auth/login, POST /auth/logout.

use reqwest::StatusCode;

use crate::helpers::*;

/// An authorize request that answers at once: a code with a session, `login_required` without.
const SILENT_AUTHORIZE: [(&str, &str); 4] = [
    ("response_type", "code"),
    ("client_id", APP),
    ("redirect_uri", APP_REDIRECT),
    ("prompt", "none"),
];

#[tokio::test]
async fn json_login_sets_a_hardened_session_cookie() {
    let app = spawn_app().await;
    let res = app.login_response("alice", "wonderland").await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("authplane_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "http issuer must not set Secure");
    let body = json(res).await;
    assert_eq!(body["session_expires_in"], 8 * 3600);
}

#[tokio::test]
async fn https_issuer_sets_secure() {
    let app = spawn_with(test_config(|s| s.issuer = Some("https://auth.example".into())), None).await;
    let res = app
        .client
        .post(app.url("/auth/login"))
        .form(&[("username", "alice"), ("password", "wonderland")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn failed_login_is_the_same_for_unknown_users_and_wrong_passwords() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();
    let hasher = app.state.sessions.hasher();
    for (u, p) in [("alice", "wrong"), ("nobody", "wonderland")] {
        let before = hasher.verifications();
        let res = app
            .client
            .post(app.url("/auth/login"))
            .header("accept", "application/json")
            .form(&[("username", u), ("password", p)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get("set-cookie").is_none());
        bodies.push(res.text().await.unwrap());
        assert_eq!(
            hasher.verifications() - before,
            1,
            "{u}: one argon2 verification, known user or not"
        );
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&bodies[0]).unwrap()["error"],
        "invalid_credentials"
    );
}

#[tokio::test]
async fn browsers_get_the_form_again_on_failure() {
    let app = spawn_app().await;
    let res = app
        .browser_login("alice", "nope", "/auth/authorize?client_id=demo-app")
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<form") && html.contains("/auth/authorize?client_id=demo-app"));
}

#[tokio::test]
async fn login_redirects_back_to_authorize_only() {
    let app = spawn_app().await;
    let post = |return_to: &'static str| {
        app.client
            .post(app.url("/auth/login"))
            .header("accept", "text/html")
            .form(&[
                ("username", "alice"),
                ("password", "wonderland"),
                ("return_to", return_to),
            ])
            .send()
    };
    let res = post("/auth/authorize?client_id=demo-app&state=a%20b").await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()["location"],
        "/auth/authorize?client_id=demo-app&state=a%20b"
    );
    assert!(session_cookie(res.headers()).is_some());
    for evil in [
        "https://evil.example/auth/authorize",
        "//evil.example/auth/authorize",
        "/elsewhere",
    ] {
        let res = post(evil).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{evil}");
        assert!(res.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn login_page_keeps_return_to_and_sends_security_headers() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/auth/login?return_to=%2Fauth%2Fauthorize%3Fclient_id%3Ddemo-app%26x%3D%22%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("form-action"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let html = res.text().await.unwrap();
    assert!(
        html.contains(r#"value="/auth/authorize?client_id=demo-app&amp;x=&quot;&gt;""#),
        "{html}"
    );
}

#[tokio::test]
async fn cross_site_login_posts_are_refused() {
    let app = spawn_app().await;
    let attempt = |headers: Vec<(&'static str, &'static str)>| {
        let mut req = app
            .client
            .post(app.url("/auth/login"))
            .form(&[("username", "alice"), ("password", "wonderland")]);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "cross-site"), ("origin", "null")],
        vec![("origin", "https://evil.example")],
    ] {
        let res = attempt(headers.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(res.headers().get("set-cookie").is_none());
        assert!(json(res).await["error"].is_string());
    }
    // The page's own form under Referrer-Policy: no-referrer, and an API client without Origin.
    for headers in [
        vec![("sec-fetch-site", "same-origin"), ("origin", "null")],
        vec![],
        vec![("origin", "http://127.0.0.1:8080")],
    ] {
        let res = attempt(headers.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{headers:?}");
        assert!(session_cookie(res.headers()).is_some());
    }
}

#[tokio::test]
async fn logout_revokes_the_session_at_once() {
    let app = spawn_app().await;
    let session = app.login().await;
    // Warm the session cache.
    let q = SILENT_AUTHORIZE;
    let res = app.authorize(Some(&session), &q).await;
    assert!(param(&location_params(&res), "code").is_some());
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .header("cookie", session_header(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let res = app.authorize(Some(&session), &q).await;
    assert_eq!(
        param(&location_params(&res), "error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn sessions_expire() {
    let app = spawn_with(test_config(|s| s.session_ttl = Some("10m".parse().unwrap())), None).await;
    let session = app.login().await;
    let q = SILENT_AUTHORIZE;
    assert!(param(&location_params(&app.authorize(Some(&session), &q).await), "code").is_some());
    app.advance(std::time::Duration::from_secs(601));
    let res = app.authorize(Some(&session), &q).await;
    assert_eq!(
        param(&location_params(&res), "error").as_deref(),
        Some("login_required")
    );
}
