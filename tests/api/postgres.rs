//! Several nodes on one PostgreSQL: the whole flow across nodes, exactly-once across nodes, and
//! cross-node invalidation (invariant 6), including after the listener's connection is lost.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;
use crate::pg::TestDb;

/// Polls until `node` rejects `token` at userinfo; returns how long that took. Bounded by the
/// cache TTL (the worst case the contract allows), far above the expected milliseconds.
async fn until_rejected(node: &TestApp, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        if node.userinfo(token).await.status() == StatusCode::UNAUTHORIZED {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still accepted after the cache TTL"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn the_whole_flow_across_two_nodes() {
    let db = TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let session = a.login().await;
    // Code on A, token on B, userinfo on both, refresh on A, introspect on B.
    let code = a.code(&session, APP, APP_REDIRECT, "openid email").await;
    let res = b.redeem_app(&code).await;
    assert_eq!(res.status(), StatusCode::OK);
    let t = json(res).await;
    let access = s(&t, "access_token");
    assert_eq!(json(a.userinfo(&access).await).await["email"], "alice@example.com");
    assert_eq!(b.userinfo(&access).await.status(), StatusCode::OK);
    let next = json(a.refresh_app(&s(&t, "refresh_token")).await).await;
    assert_eq!(b.introspect(&s(&next, "access_token")).await["active"], true);
    // The session made on A works on B.
    let res = b
        .authorize(
            Some(&session),
            &[("response_type", "code"), ("client_id", APP), ("prompt", "none")],
        )
        .await;
    assert!(param(&location_params(&res), "code").is_some());
    // Revoke on A: B stops accepting, although it had the token cached.
    assert_eq!(b.userinfo(&s(&next, "access_token")).await.status(), StatusCode::OK);
    assert_eq!(
        a.revoke((APP, APP_SECRET), &s(&next, "refresh_token")).await.status(),
        StatusCode::OK
    );
    until_rejected(&b, &s(&next, "access_token")).await;
    assert_eq!(b.introspect(&s(&next, "refresh_token")).await["active"], false);
}

#[tokio::test]
async fn concurrent_redemptions_across_nodes_give_exactly_one_success() {
    let db = TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let session = a.login().await;
    let code = a.code(&session, APP, APP_REDIRECT, "openid").await;
    let reqs = (0..50).map(|i| {
        if i % 2 == 0 {
            a.redeem_app(&code)
        } else {
            b.redeem_app(&code)
        }
    });
    let results = futures::future::join_all(reqs).await;
    let ok: Vec<_> = results.iter().filter(|r| r.status() == StatusCode::OK).collect();
    assert_eq!(ok.len(), 1);
    assert!(
        results
            .iter()
            .all(|r| r.status() == StatusCode::OK || r.status() == StatusCode::BAD_REQUEST)
    );

    let t = a.app_tokens("openid").await;
    let refresh = s(&t, "refresh_token");
    let reqs = (0..50).map(|i| {
        if i % 2 == 0 {
            a.refresh_app(&refresh)
        } else {
            b.refresh_app(&refresh)
        }
    });
    let results = futures::future::join_all(reqs).await;
    assert_eq!(results.iter().filter(|r| r.status() == StatusCode::OK).count(), 1);
}

#[tokio::test]
async fn revocation_rotation_and_logout_on_one_node_are_enforced_on_the_other() {
    let db = TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    // An access token revoked on A.
    let t = a.app_tokens("openid").await;
    let access = s(&t, "access_token");
    assert_eq!(b.userinfo(&access).await.status(), StatusCode::OK);
    a.revoke((APP, APP_SECRET), &access).await;
    until_rejected(&b, &access).await;
    // A refresh token rotated on A and replayed on B: refused, and the grant dies everywhere.
    let old = s(&t, "refresh_token");
    assert_eq!(b.introspect(&old).await["active"], true, "B caches the refresh token");
    let next = json(a.refresh_app(&old).await).await;
    let start = Instant::now();
    while b.introspect(&old).await["active"] == true {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(json(b.refresh_app(&old).await).await["error"], "invalid_grant");
    until_rejected(&a, &s(&next, "access_token")).await;
    // A logout on A ends the session on B.
    let session = a.login().await;
    let q = [("response_type", "code"), ("client_id", APP), ("prompt", "none")];
    assert!(param(&location_params(&b.authorize(Some(&session), &q).await), "code").is_some());
    a.client
        .post(a.url("/auth/logout"))
        .header("cookie", session_header(&session))
        .send()
        .await
        .unwrap();
    let start = Instant::now();
    while param(&location_params(&b.authorize(Some(&session), &q).await), "error").is_none() {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_lost_listener_connection_flushes_the_caches_and_reconnects() {
    let db = TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let t = a.app_tokens("openid").await;
    let access = s(&t, "access_token");
    assert_eq!(b.userinfo(&access).await.status(), StatusCode::OK);
    // Cut every listener connection of this database from the server side.
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let mut down = b.listening.clone();
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'authplane-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), down.wait_for(|c| !*c))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), down.wait_for(|c| *c))
        .await
        .unwrap()
        .unwrap();
    let health = b.health().await;
    assert_eq!(
        health["caches"]["access_tokens"]["entries"], 0,
        "notifications may have been missed: flushed"
    );
    assert_eq!(health["store"]["invalidation_listener_connected"], true);
    assert_eq!(health["store"]["kind"], "postgres");
    // Invalidation works again after the reconnect.
    a.revoke((APP, APP_SECRET), &access).await;
    until_rejected(&b, &access).await;
}

#[tokio::test]
async fn pool_metrics_and_health_on_postgres() {
    let db = TestDb::new().await;
    let app = db.spawn(|s| s.pool_size = Some(4)).await;
    app.app_tokens("openid").await;
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("authplane_store_pool_max_connections 4"), "{metrics}");
    assert!(metrics.contains("authplane_store_pool_wait_seconds_count"));
    assert!(metrics.contains(r#"authplane_store_operation_duration_seconds_count{op="consume_code"} 1"#));
    let h = app.health().await;
    assert_eq!(h["store"]["pool"]["size"], 4);
    assert_eq!(
        app.client.get(app.url("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );
}
