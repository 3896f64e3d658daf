//! Logging out ends the session and its grants (`offline_access` grants excepted): `POST
//! /auth/logout` and RP-initiated logout at `/auth/end-session`, on both stores.

use authplane_testkit::{APP, APP_REDIRECT, APP_SECRET, TestApp, json, location_params, param, s};
use reqwest::StatusCode;
use serde_json::Value;

/// A code flow on an existing session; returns the token response.
async fn tokens_for(app: &TestApp, session: &str, client: &str, scope: &str) -> Value {
    let code = app.code(session, client, APP_REDIRECT, scope).await;
    let res = app.redeem((client, APP_SECRET), APP_REDIRECT, &code).await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

async fn session_alive(app: &TestApp, session: &str) -> bool {
    let q = [("response_type", "code"), ("client_id", APP), ("prompt", "none")];
    param(&location_params(&app.authorize(Some(session), &q).await), "code").is_some()
}

async fn refresh_works(app: &TestApp, client: &str, refresh: &str) -> bool {
    app.token(
        Some((client, APP_SECRET)),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await
    .status()
        == StatusCode::OK
}

async fn end_session(app: &TestApp, session: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(app.url("/auth/end-session"))
        .query(query)
        .header("cookie", authplane_testkit::session_header(session))
        .send()
        .await
        .unwrap()
}

/// With a valid ID token hint: the session ends at once, its grants are revoked except the
/// `offline_access` one, and the browser goes to the registered URI with `state`.
#[tokio::test]
async fn end_session_with_a_hint_logs_out_at_once_and_keeps_offline_grants() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let online = tokens_for(&app, &session, APP, "openid profile").await;
    let offline = tokens_for(&app, &session, "oidc-es256", "openid offline_access").await;
    let other_session = app.login().await;
    let unrelated = tokens_for(&app, &other_session, APP, "openid").await;

    let res = end_session(
        &app,
        &session,
        &[
            ("id_token_hint", &s(&online, "id_token")),
            ("post_logout_redirect_uri", "http://127.0.0.1:9000/bye"),
            ("state", "s 1&x"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "http://127.0.0.1:9000/bye?state=s+1%26x");
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));

    assert!(!session_alive(&app, &session).await);
    assert_eq!(
        app.userinfo(&s(&online, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(!refresh_works(&app, APP, &s(&online, "refresh_token")).await);
    assert_eq!(
        app.userinfo(&s(&offline, "access_token")).await.status(),
        StatusCode::OK
    );
    assert!(
        refresh_works(&app, "oidc-es256", &s(&offline, "refresh_token")).await,
        "offline_access outlives the session"
    );
    assert!(
        session_alive(&app, &other_session).await,
        "another session is untouched"
    );
    assert_eq!(
        app.userinfo(&s(&unrelated, "access_token")).await.status(),
        StatusCode::OK
    );

    // A registered URI with a query of its own keeps it.
    let session = app.login().await;
    let t = tokens_for(&app, &session, "oidc-es256", "openid").await;
    let res = end_session(
        &app,
        &session,
        &[
            ("id_token_hint", &s(&t, "id_token")),
            ("post_logout_redirect_uri", "http://127.0.0.1:9000/es-bye?from=rp"),
            ("state", "z"),
        ],
    )
    .await;
    assert_eq!(
        res.headers()["location"],
        "http://127.0.0.1:9000/es-bye?from=rp&state=z"
    );
}

/// Without a hint the user confirms on a page first: the GET changes nothing, a cross-site
/// confirmation is refused, the page's own form logs out.
#[tokio::test]
async fn end_session_without_a_hint_asks_first() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let t = tokens_for(&app, &session, APP, "openid").await;
    let query = [
        ("client_id", APP),
        ("post_logout_redirect_uri", "http://127.0.0.1:9000/bye"),
        ("state", "st"),
    ];
    let res = end_session(&app, &session, &query).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(
        page.contains(r#"action="/auth/end-session""#) && page.contains(r#"name="confirm""#),
        "{page}"
    );
    assert!(session_alive(&app, &session).await, "a link alone logs nobody out");

    let mut form: Vec<(&str, &str)> = query.to_vec();
    form.push(("confirm", "yes"));
    let post = |site: &'static str| {
        app.client
            .post(app.url("/auth/end-session"))
            .header("cookie", authplane_testkit::session_header(&session))
            .header("sec-fetch-site", site)
            .form(&form)
            .send()
    };
    let res = post("cross-site").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(session_alive(&app, &session).await);
    let res = post("same-origin").await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "http://127.0.0.1:9000/bye?state=st");
    assert!(!session_alive(&app, &session).await);
    assert_eq!(
        app.userinfo(&s(&t, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // No client named: the page says so instead of redirecting.
    let session = app.login().await;
    let res = app
        .client
        .post(app.url("/auth/end-session"))
        .header("cookie", authplane_testkit::session_header(&session))
        .header("sec-fetch-site", "same-origin")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("signed out"));
    assert!(!session_alive(&app, &session).await);
}

/// Bad requests are an error page, never a redirect, and change nothing.
#[tokio::test]
async fn bad_end_session_requests_change_nothing() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let t = tokens_for(&app, &session, APP, "openid").await;
    let hint = s(&t, "id_token");
    let mut forged: Vec<String> = hint.split('.').map(str::to_owned).collect();
    forged[2] = forged[2].chars().rev().collect();
    let forged = forged.join(".");
    for query in [
        vec![
            ("id_token_hint", hint.as_str()),
            ("post_logout_redirect_uri", "http://evil.example/"),
        ],
        vec![("id_token_hint", forged.as_str())],
        vec![("id_token_hint", hint.as_str()), ("client_id", "oidc-es256")],
        vec![("post_logout_redirect_uri", "http://127.0.0.1:9000/bye")],
        vec![
            ("client_id", "nobody"),
            ("post_logout_redirect_uri", "http://127.0.0.1:9000/bye"),
        ],
        vec![("client_id", APP), ("client_id", APP)],
    ] {
        let res = end_session(&app, &session, &query).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query:?}");
        assert!(res.headers().get("location").is_none());
        assert!(res.headers().get("set-cookie").is_none());
    }
    assert!(session_alive(&app, &session).await);
    assert_eq!(app.userinfo(&s(&t, "access_token")).await.status(), StatusCode::OK);
}

/// `POST /auth/logout` has the same effect on grants.
#[tokio::test]
async fn logout_revokes_the_sessions_grants() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let online = tokens_for(&app, &session, APP, "openid").await;
    let offline = tokens_for(&app, &session, "oidc-es256", "openid offline_access").await;
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .header("cookie", authplane_testkit::session_header(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.userinfo(&s(&online, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(refresh_works(&app, "oidc-es256", &s(&offline, "refresh_token")).await);
}

/// On PostgreSQL: a logout on node A ends the session's grants on node B within the
/// invalidation window (B had them cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_one_node_revokes_the_grants_on_the_other() {
    let db = crate::pg::TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let session = a.login().await;
    let online = tokens_for(&a, &session, APP, "openid").await;
    let offline = tokens_for(&a, &session, "oidc-es256", "openid offline_access").await;
    let access = s(&online, "access_token");
    assert_eq!(b.userinfo(&access).await.status(), StatusCode::OK, "B caches the grant");
    let res = end_session(&a, &session, &[("id_token_hint", &s(&online, "id_token"))]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let window = crate::postgres::until_rejected(&b, &access).await;
    assert!(window < std::time::Duration::from_secs(30), "{window:?}");
    assert!(!refresh_works(&b, APP, &s(&online, "refresh_token")).await);
    assert_eq!(b.userinfo(&s(&offline, "access_token")).await.status(), StatusCode::OK);
}
