//! GET/POST /auth/userinfo.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn claims_follow_the_scope() {
    let app = spawn_app().await;
    for (scope, expect) in [
        ("openid", serde_json::json!({"sub": "u-alice"})),
        (
            "openid profile",
            serde_json::json!({"sub": "u-alice", "name": "Alice Liddell"}),
        ),
        (
            "openid email",
            serde_json::json!({"sub": "u-alice", "email": "alice@example.com", "email_verified": true}),
        ),
    ] {
        let t = app.app_tokens(scope).await;
        let res = app.userinfo(&s(&t, "access_token")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(json(res).await, expect, "{scope}");
    }
}

/// GET is answered by the handler the hot layer calls itself, HEAD by the router (which
/// strips the body): the two heads agree, Content-Length included, and HEAD has no body.
#[tokio::test]
async fn head_answers_the_head_of_get() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid profile").await;
    let token = s(&t, "access_token");
    for token in [Some(token.as_str()), None] {
        let send = |method: reqwest::Method| {
            let req = app.client.request(method, app.url("/auth/userinfo"));
            match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
            .send()
        };
        let get = send(reqwest::Method::GET).await.unwrap();
        let head = send(reqwest::Method::HEAD).await.unwrap();
        assert_eq!(head.status(), get.status(), "token: {}", token.is_some());
        for name in ["content-type", "content-length", "cache-control", "www-authenticate"] {
            assert_eq!(head.headers().get(name), get.headers().get(name), "{name}");
        }
        let length: usize = get.headers()["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(get.bytes().await.unwrap().len(), length);
        assert!(head.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn post_with_the_token_in_the_header_or_the_body() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let token = s(&t, "access_token");
    let res = app
        .client
        .post(app.url("/auth/userinfo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/auth/userinfo"))
        .form(&[("access_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/auth/userinfo"))
        .bearer_auth(&token)
        .form(&[("access_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn missing_unknown_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/auth/userinfo")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let www = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(www.starts_with("Bearer") && !www.contains("error="), "{www}");
    for bad in ["garbage", "x".repeat(43).as_str()] {
        let res = app.userinfo(bad).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
        assert_eq!(json(res).await["error"], "invalid_token");
    }
    let t = app.app_tokens("openid").await;
    let token = s(&t, "access_token");
    assert_eq!(app.userinfo(&token).await.status(), StatusCode::OK);
    app.advance(Duration::from_secs(15 * 60 + 1));
    let res = app.userinfo(&token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "expired, although cached");
}

#[tokio::test]
async fn tokens_without_a_user_or_openid_are_403_insufficient_scope() {
    let app = spawn_app().await;
    let cc = json(
        app.token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
            .await,
    )
    .await;
    let res = app.userinfo(&s(&cc, "access_token")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(json(res).await["error"], "insufficient_scope");
    let t = app.app_tokens("profile").await;
    assert_eq!(
        app.userinfo(&s(&t, "access_token")).await.status(),
        StatusCode::FORBIDDEN
    );
}
