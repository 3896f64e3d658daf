//! POST /auth/revoke (RFC 7009) and POST /auth/introspect (RFC 7662).

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn revoking_an_access_token_revokes_that_token_only() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let access = s(&t, "access_token");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK, "warm the cache");
    let res = app.revoke((APP, APP_SECRET), &access).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access).await, serde_json::json!({"active": false}));
    // The refresh token is unaffected.
    assert_eq!(app.refresh_app(&s(&t, "refresh_token")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_the_whole_grant() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let next = json(app.refresh_app(&s(&t, "refresh_token")).await).await;
    let (a1, a2, r2) = (
        s(&t, "access_token"),
        s(&next, "access_token"),
        s(&next, "refresh_token"),
    );
    assert_eq!(app.userinfo(&a2).await.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/auth/revoke"))
        .basic_auth(APP, Some(APP_SECRET))
        .form(&[("token", r2.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for token in [&a1, &a2] {
        assert_eq!(app.userinfo(token).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(json(app.refresh_app(&r2).await).await["error"], "invalid_grant");
    assert_eq!(app.introspect(&r2).await["active"], false);
    // The cascade is queued for the sweeper and purges the grant's tokens.
    assert!(!app.state.tokens.revocations().is_empty());
    let stats = app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(stats.grants_purged, 1);
    assert!(app.state.tokens.revocations().is_empty());
}

#[tokio::test]
async fn a_client_revokes_only_its_own_tokens_and_any_string_gets_200() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let access = s(&t, "access_token");
    let res = app.revoke((OTHER, OTHER_SECRET), &access).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);
    let res = app.revoke((OTHER, OTHER_SECRET), &s(&t, "refresh_token")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.refresh_app(&s(&t, "refresh_token")).await.status(), StatusCode::OK);
    assert_eq!(
        app.revoke((APP, APP_SECRET), "not-a-token").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoke_and_introspect_require_client_authentication() {
    let app = spawn_app().await;
    for path in ["/auth/revoke", "/auth/introspect"] {
        let res = app
            .client
            .post(app.url(path))
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(json(res).await["error"], "invalid_client");
        let res = app
            .client
            .post(app.url(path))
            .basic_auth(APP, Some("bad"))
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        let res = app
            .client
            .post(app.url(path))
            .basic_auth(APP, Some(APP_SECRET))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json(res).await["error"], "invalid_request");
    }
}

#[tokio::test]
async fn introspection_reports_active_tokens() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid profile").await;
    let now = app.clock.now().secs();
    let a = app.introspect(&s(&t, "access_token")).await;
    assert_eq!(a["active"], true);
    assert_eq!(a["scope"], "openid profile");
    assert_eq!(a["client_id"], APP);
    assert_eq!(a["sub"], "u-alice");
    assert_eq!(a["token_type"], "access_token");
    assert_eq!(a["iat"], now);
    assert_eq!(a["exp"], now + 900);
    assert!(
        a["aud"].is_string(),
        "the issuer, for a token that names no resource: {a}"
    );
    assert!(a.get("cnf").is_none(), "not DPoP-bound: {a}");
    let r = app.introspect(&s(&t, "refresh_token")).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    assert_eq!(
        (&r["scope"], &r["client_id"], &r["sub"]),
        (&a["scope"], &a["client_id"], &a["sub"])
    );
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["active", "client_id", "exp", "iat", "scope", "sub", "token_type"]
    );
    assert_eq!(app.introspect("unknown").await, serde_json::json!({"active": false}));
    let cc = json(
        app.token(
            Some((APP, APP_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "openid")],
        )
        .await,
    )
    .await;
    let c = app.introspect(&s(&cc, "access_token")).await;
    assert_eq!(c["active"], true);
    assert_eq!(c["sub"], APP);
}
