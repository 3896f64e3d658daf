//! grant_type=refresh_token: rotation, replay, scope narrowing, concurrency.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn refresh_rotates_and_a_rotated_token_replayed_revokes_the_grant() {
    let app = spawn_app().await;
    let first = app.app_tokens("openid profile").await;
    let r1 = s(&first, "refresh_token");
    let second = json(app.refresh_app(&r1).await).await;
    let r2 = s(&second, "refresh_token");
    let a2 = s(&second, "access_token");
    assert_ne!(r1, r2, "refresh tokens rotate");
    assert_eq!(second["scope"], "openid profile");
    assert_eq!(app.userinfo(&a2).await.status(), StatusCode::OK);
    // Replaying r1 is refused and revokes the whole grant: r2 and a2 die with it.
    let res = app.refresh_app(&r1).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_grant");
    assert_eq!(app.userinfo(&a2).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.userinfo(&s(&first, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(json(app.refresh_app(&r2).await).await["error"], "invalid_grant");
    assert_eq!(app.introspect(&r2).await["active"], false);
}

#[tokio::test]
async fn refresh_may_narrow_but_never_widen_the_scope() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid profile").await;
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&t, "refresh_token")),
                ("scope", "openid email"),
            ],
        )
        .await;
    assert_eq!(json(res).await["error"], "invalid_scope");
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&t, "refresh_token")),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let narrowed = json(res).await;
    assert_eq!(narrowed["scope"], "openid");
    // The new refresh token keeps the grant's full scope.
    let again = json(app.refresh_app(&s(&narrowed, "refresh_token")).await).await;
    assert_eq!(again["scope"], "openid profile");
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_their_client_and_expire() {
    let app = spawn_with(test_config(|s| s.refresh_token_ttl = Some("1h".parse().unwrap())), None).await;
    let session = app.login().await;
    let code = app.code(&session, SPA, SPA_REDIRECT, "openid").await;
    let res = app
        .token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", SPA),
                ("code", &code),
                ("redirect_uri", SPA_REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    let spa = json(res).await;
    // demo-app cannot use demo-spa's refresh token.
    assert_eq!(
        json(app.refresh_app(&s(&spa, "refresh_token")).await).await["error"],
        "invalid_grant"
    );
    let t = app.app_tokens("openid").await;
    app.advance(std::time::Duration::from_secs(3601));
    assert_eq!(
        json(app.refresh_app(&s(&t, "refresh_token")).await).await["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn fifty_concurrent_refreshes_give_exactly_one_success() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let refresh = s(&t, "refresh_token");
    let results = futures::future::join_all((0..50).map(|_| app.refresh_app(&refresh))).await;
    let statuses: Vec<_> = results.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST)
    );
}
