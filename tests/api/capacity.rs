//! `--memory-store-capacity` (invariant 12 of docs/reference.md): at the bound, new issuance is 503
//! `temporarily_unavailable` with `Retry-After`, nothing live is evicted, and issuance resumes once
//! the sweeper has removed what expired.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

const CAPACITY: usize = 50;

async fn client_credentials(app: &TestApp) -> reqwest::Response {
    app.token(
        Some((OTHER, OTHER_SECRET)),
        &[("grant_type", "client_credentials"), ("scope", "openid")],
    )
    .await
}

#[tokio::test]
async fn a_client_credentials_flood_stops_at_the_bound_and_evicts_nothing() {
    let app = spawn_with(
        test_config(|s| {
            s.memory_store_capacity = Some(CAPACITY);
            s.sweep_interval = Some("30s".parse().unwrap());
        }),
        None,
    )
    .await;
    // One request first, so that the client's secret is verified once and cached: concurrent
    // first verifications are counted as pending attempts by the throttle.
    let res = client_credentials(&app).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut issued = vec![s(&json(res).await, "access_token")];
    // The flood: concurrent requests, well past the bound.
    let results = futures::future::join_all((1..CAPACITY + 30).map(|_| client_credentials(&app))).await;
    let mut refused = 0;
    for res in results {
        match res.status() {
            StatusCode::OK => issued.push(s(&json(res).await, "access_token")),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(res.headers()["retry-after"], "30", "retry after the next sweep");
                assert_eq!(res.text().await.unwrap(), r#"{"error":"temporarily_unavailable"}"#);
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(issued.len(), CAPACITY, "exactly the capacity is issued");
    assert_eq!(refused, 30);
    // Every other kind of issuance is refused too; reading and revoking are not.
    let res = app.login_response("alice", "wonderland").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    // Nothing issued before was evicted.
    for token in &issued {
        assert_eq!(app.introspect(token).await["active"], true);
        // Valid, but a client's own token has no user: 403, not 401.
        assert_eq!(app.userinfo(token).await.status(), StatusCode::FORBIDDEN);
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_store_records{kind="access_tokens"} 50"#),
        "{metrics}"
    );
    assert!(metrics.contains("authplane_store_capacity_records 50"), "{metrics}");
    assert!(
        metrics.contains("authplane_store_capacity_refusals_total 31"),
        "{metrics}"
    );
    let health = app.health().await;
    assert_eq!(health["store"]["records"]["held"], 50);
    assert_eq!(health["store"]["records"]["capacity"], 50);
    // Revoking frees nothing by itself but always works.
    assert_eq!(
        app.revoke((OTHER, OTHER_SECRET), &issued[0]).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.introspect(&issued[0]).await["active"], false);
    // Once the tokens have expired and the sweeper removed them, issuance works again.
    app.advance(Duration::from_secs(16 * 60));
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    let res = client_credentials(&app).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.userinfo(&s(&json(res).await, "access_token")).await.status(),
        StatusCode::FORBIDDEN
    );
    app.login().await;
}

/// A refresh refused at the bound leaves the presented token current: the client retries it once
/// there is room, and it is not mistaken for a replay.
#[tokio::test]
async fn a_refresh_refused_at_the_bound_can_be_retried() {
    // A session, a code, a grant, an access token and a refresh family: 5 records.
    let app = spawn_with(test_config(|s| s.memory_store_capacity = Some(5)), None).await;
    let t = app.app_tokens("openid").await;
    let refresh = s(&t, "refresh_token");
    let res = app.refresh_app(&refresh).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.introspect(&refresh).await["active"], true);
    // The code expires and is swept: room for one access token.
    app.advance(Duration::from_secs(61));
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    let res = app.refresh_app(&refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let next = json(res).await;
    assert_eq!(app.userinfo(&s(&next, "access_token")).await.status(), StatusCode::OK);
    assert_eq!(app.userinfo(&s(&t, "access_token")).await.status(), StatusCode::OK);
}

/// client_credentials JWT access tokens are issued with no store write, but revoking one writes a
/// record until its expiry: those records may go a tenth past the bound (so revocation works
/// when issuance is refused), and no further. A client revoking in a loop cannot grow the store
/// without end; the revocation past the reserve is 503, retryable, and its token stays active.
#[tokio::test]
async fn revoking_unstored_jwts_in_a_loop_stops_at_the_revocation_reserve() {
    let app = spawn_with(test_config(|s| s.memory_store_capacity = Some(20)), None).await;
    let client = (JWT_APP, APP_SECRET);
    let mut revoked = Vec::new();
    let refused = loop {
        let res = app.token(Some(client), &[("grant_type", "client_credentials")]).await;
        assert_eq!(res.status(), StatusCode::OK, "issuance writes nothing");
        let token = s(&json(res).await, "access_token");
        let res = app.revoke(client, &token).await;
        match res.status() {
            StatusCode::OK => revoked.push(token),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(res.headers().contains_key("retry-after"));
                assert_eq!(res.text().await.unwrap(), r#"{"error":"temporarily_unavailable"}"#);
                break token;
            }
            other => panic!("unexpected {other}"),
        }
        assert!(revoked.len() <= 22, "past the reserve");
    };
    assert_eq!(revoked.len(), 22, "the bound (20) and its tenth");
    assert_eq!(app.health().await["store"]["records"]["held"], 22);
    for token in &revoked {
        assert_eq!(app.introspect(token).await["active"], false);
    }
    assert_eq!(
        app.introspect(&refused).await["active"],
        true,
        "not revoked: told to retry"
    );
}
