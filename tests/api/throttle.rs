//! Brute-force protection: per username, per client address, per client; 429 with Retry-After,
//! never a 5xx, and never a slowdown for other users or clients.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

async fn login(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/login"))
        .header("accept", "application/json")
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_throttle_that_username_only() {
    let app = spawn_with(
        test_config(|s| {
            s.login_max_failures = Some(3);
            s.failure_window = Some("1m".parse().unwrap());
        }),
        None,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(login(&app, "alice", "guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let verified = app.state.sessions.hasher().verifications();
    let res = login(&app, "alice", "wonderland").await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(json(res).await["error"].is_string());
    assert_eq!(
        app.state.sessions.hasher().verifications(),
        verified,
        "no argon2 run for a throttled attempt"
    );
    // Another account is not slowed by alice's failures.
    assert_eq!(login(&app, "bob", "builder").await.status(), StatusCode::OK);
    // Unknown usernames are throttled the same way (no enumeration by behaviour).
    for _ in 0..3 {
        assert_eq!(login(&app, "mallory", "x").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&app, "mallory", "x").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // After the window, alice may log in again, and success clears her count.
    app.advance(Duration::from_secs(61));
    assert_eq!(login(&app, "alice", "wonderland").await.status(), StatusCode::OK);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_throttled_total{key="username"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn failed_logins_throttle_the_client_address() {
    let app = spawn_with(
        test_config(|s| {
            s.login_max_failures = Some(100);
            s.address_max_failures = Some(5);
        }),
        None,
    )
    .await;
    for i in 0..5 {
        assert_eq!(
            login(&app, &format!("user{i}"), "x").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = login(&app, "bob", "builder").await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "this address spent its failures"
    );
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn failed_client_authentications_throttle_that_client_only() {
    let app = spawn_with(test_config(|s| s.client_max_failures = Some(3)), None).await;
    let cc = [("grant_type", "client_credentials")];
    for _ in 0..3 {
        assert_eq!(
            app.token(Some((APP, "wrong")), &cc).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = app.token(Some((APP, APP_SECRET)), &cc).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        app.token(Some((OTHER, OTHER_SECRET)), &cc).await.status(),
        StatusCode::OK,
        "other clients work"
    );
    app.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(app.token(Some((APP, APP_SECRET)), &cc).await.status(), StatusCode::OK);
}
