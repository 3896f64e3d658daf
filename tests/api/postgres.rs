//! Several nodes on one PostgreSQL: the whole flow across nodes, exactly-once across nodes, and
//! cross-node invalidation (invariant 6 of docs/reference.md), including after the listener's connection is lost.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;
use crate::pg::TestDb;

/// Polls until `node` rejects `token` at userinfo; returns how long that took. Bounded by the
/// cache TTL (the worst case the contract allows), far above the expected milliseconds.
pub(crate) async fn until_rejected(node: &TestApp, token: &str) -> Duration {
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

/// Migration 2 (one refresh record per grant): a database of schema version 1 keeps each grant's
/// current refresh token working, as generation 0 of its family, with replay detection from
/// there on; its rotated rows are dropped.
#[tokio::test]
async fn refresh_tokens_issued_before_migration_2_keep_working() {
    let db = TestDb::new().await;
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    client
        .batch_execute(include_str!("../../migrations/0001_initial.sql"))
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE authplane_migrations (version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO authplane_migrations (version) VALUES (1);",
        )
        .await
        .unwrap();
    let (current, rotated) = (authplane::crypto::generate_token(), authplane::crypto::generate_token());
    let grant = authplane::crypto::generate_grant_id();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let expires = now + 86_400_000;
    client
        .execute(
            "INSERT INTO grants (id, client_id, sub, scope, created_at, expires_at) VALUES ($1, $2, 'u-alice', 'openid', $3, $4)",
            &[&grant.0.as_slice(), &APP, &now, &expires],
        )
        .await
        .unwrap();
    for (token, rotated_at) in [(&current, None), (&rotated, Some(now))] {
        client
            .execute(
                "INSERT INTO refresh_tokens (hash, client_id, sub, scope, grant_id, issued_at, expires_at, rotated_at)
                 VALUES ($1, $2, 'u-alice', 'openid', $3, $4, $5, $6)",
                &[
                    &token.hash.0.as_slice(),
                    &APP,
                    &grant.0.as_slice(),
                    &now,
                    &expires,
                    &rotated_at,
                ],
            )
            .await
            .unwrap();
    }
    let app = db.spawn(|_| {}).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM refresh_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the rotated row is dropped");
    assert_eq!(app.introspect(&current.value).await["active"], true);
    // A rotated token of before the migration is unknown now: refused, and it revokes nothing.
    assert_eq!(
        json(app.refresh_app(&rotated.value).await).await["error"],
        "invalid_grant"
    );
    let res = app.refresh_app(&current.value).await;
    assert_eq!(res.status(), StatusCode::OK);
    let next = s(&json(res).await, "refresh_token");
    assert_eq!(
        next.split('.').take(2).collect::<Vec<_>>(),
        [current.value.as_str(), "1"],
        "the old token is the family secret of its successors"
    );
    // The old token, replayed after its rotation, revokes the grant.
    assert_eq!(
        json(app.refresh_app(&current.value).await).await["error"],
        "invalid_grant"
    );
    assert_eq!(app.introspect(&next).await["active"], false);
    drop(client);
    let _ = driver.await;
}
