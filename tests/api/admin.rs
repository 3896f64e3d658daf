//! The administration API so far: `POST /admin/keys/rotate`, authorised by scope `admin`.

use std::time::Duration;

use authplane_testkit::fixture::{ADMIN, ADMIN_SECRET};
use authplane_testkit::{APP, APP_SECRET, TestApp, json, s};
use reqwest::StatusCode;
use serde_json::Value;

pub async fn admin_token(app: &TestApp) -> String {
    let res = app
        .token(
            Some((ADMIN, ADMIN_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    s(&json(res).await, "access_token")
}

async fn rotate(app: &TestApp, token: Option<&str>, body: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(app.url("/admin/keys/rotate"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_owned());
    }
    req.send().await.unwrap()
}

fn action_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("authplane_admin_actions_total{action=\"keys_rotate\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn an_admin_token_rotates_the_keys_and_retire_now_withdraws_them() {
    let app = authplane_testkit::spawn_app().await;
    let before = app.jwks_kids().await;
    let token = admin_token(&app).await;
    let res = rotate(&app, Some(&token), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = json(res).await;
    let keys = answer["keys"].as_array().unwrap();
    assert_eq!(keys.iter().filter(|k| k["state"] == "active").count(), 3, "{answer}");
    assert_eq!(keys.iter().filter(|k| k["state"] == "retired").count(), 3, "{answer}");
    assert!(
        keys.iter().all(|k| k.get("d").is_none() && k.get("x").is_none()),
        "public facts only"
    );
    let after = app.jwks_kids().await;
    assert_eq!(after.len(), 6, "the old keys stay published");
    assert!(before.iter().all(|k| after.contains(k)));

    let res = rotate(&app, Some(&token), Some(r#"{"retire_now": true}"#)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let now = app.jwks_kids().await;
    assert_eq!(
        now.len(),
        6,
        "three new active, the three retired before; the replaced ones withdrawn"
    );
    let replaced: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(replaced.iter().all(|k| !now.contains(k)), "withdrawn at once");
    assert_eq!(action_count(&app.metrics_text().await), 2);
}

#[tokio::test]
async fn without_the_admin_scope_nothing_changes() {
    let app = authplane_testkit::spawn_app().await;
    let before = app.jwks_kids().await;
    // No token, a garbage token, a token without the scope, an expired admin token.
    let res = rotate(&app, None, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"authplane\"");
    let res = rotate(&app, Some("not-a-token"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(res).await["error"], "invalid_token");
    let plain = s(
        &json(
            app.token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
                .await,
        )
        .await,
        "access_token",
    );
    let res = rotate(&app, Some(&plain), None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"admin\"")
    );
    assert_eq!(json(res).await["error"], "insufficient_scope");
    let token = admin_token(&app).await;
    app.clock.advance(Duration::from_secs(16 * 60));
    let res = rotate(&app, Some(&token), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "expired");
    // Bad bodies from an admin.
    let token = admin_token(&app).await;
    for body in [
        r#"{"retire_now": "yes"}"#,
        r#"{"retire": true}"#,
        "[1,2",
        &"x".repeat(20_000),
    ] {
        let res = rotate(&app, Some(&token), Some(body)).await;
        assert!(res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::PAYLOAD_TOO_LARGE);
        assert!(json(res).await["error"].is_string());
    }
    assert_eq!(app.jwks_kids().await, before, "nothing changed");
    assert_eq!(action_count(&app.metrics_text().await), 0);
}
