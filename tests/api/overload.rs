//! Invariant 8 of docs/reference.md (load shedding) and invariant 9 of docs/reference.md (graceful shutdown), driven deterministically by a
//! store that holds calls until released.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;
use crate::test_store::TestStore;

/// An app whose hot routes run two requests at once and queue two more, on a store that holds
/// every call until released (held from the start): the setting of the shedding tests.
pub(crate) async fn two_running_two_waiting() -> (TestApp, Arc<TestStore>) {
    let store = Arc::new(TestStore::default());
    let cfg = test_config(|s| {
        s.max_inflight = Some(2);
        s.queue_capacity = Some(2);
    });
    let app = spawn_with(cfg, Some(store.clone())).await;
    store.hold();
    (app, store)
}

/// A shed answer: 503 `temporarily_unavailable` with `Retry-After: 1`, and no store call made for
/// it (`calls` is the store's count before the request).
pub(crate) async fn assert_shed_before_the_store(res: reqwest::Response, store: &TestStore, calls: usize) {
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(json(res).await["error"], "temporarily_unavailable");
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        calls,
        "the shed request never reached the store"
    );
}

#[tokio::test]
async fn a_full_endpoint_sheds_at_once_without_touching_the_store() {
    let (app, store) = two_running_two_waiting().await;
    let mut running = Vec::new();
    for i in 0..4 {
        let req = app
            .client
            .get(app.url("/auth/userinfo"))
            .bearer_auth(format!("unknown-token-{i}"));
        running.push(tokio::spawn(req.send()));
    }
    store.until_waiting(2).await;
    until_queue(&app, "/auth/userinfo", |q| q["in_flight"] == 2 && q["waiting"] == 2).await;
    let calls = store.calls.load(Ordering::SeqCst);
    assert_shed_before_the_store(app.userinfo("one-too-many").await, &store, calls).await;
    // Other endpoints are not affected, nor are health and metrics.
    assert_eq!(
        app.client.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_requests_shed_total{route="/auth/userinfo"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"authplane_queue_depth{route="/auth/userinfo"} 2"#));
    store.release();
    for r in running {
        assert_eq!(
            r.await.unwrap().unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "every admitted request is answered"
        );
    }
    until_queue(&app, "/auth/userinfo", |q| {
        q["in_flight"] == 0 && q["waiting"] == 0 && q["shed_total"] == 1
    })
    .await;
}

/// A standing queue for store connections (many requests, one connection, real PostgreSQL):
/// counts alone would admit all of them (no `--max-inflight` or `--queue-capacity` is exceeded)
/// and let each wait its turn; the delay controller sheds instead, with fast 503s, and lets go
/// once the queue is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standing_queue_for_the_store_is_shed_then_released() {
    let db = crate::pg::TestDb::new().await;
    let app = db.spawn(|s| s.pool_size = Some(1)).await;
    let mut workers = Vec::new();
    for w in 0..256 {
        let (client, url) = (app.client.clone(), app.url("/auth/userinfo"));
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..20 {
                // Unknown and distinct: each one is a store query (a negative-cache miss).
                let res = client.get(&url).bearer_auth(format!("w{w}-{i}")).send().await.unwrap();
                let retry_after = res.headers().get("retry-after").is_some();
                statuses.push((res.status(), retry_after, json(res).await["error"].clone()));
            }
            statuses
        }));
    }
    let (mut unauthorized, mut shed) = (0, 0);
    for w in workers {
        for (status, retry_after, error) in w.await.unwrap() {
            match status {
                StatusCode::UNAUTHORIZED => unauthorized += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(retry_after && error == "temporarily_unavailable", "{error}");
                    shed += 1;
                }
                other => panic!("unexpected {other}: {error}"),
            }
        }
    }
    let q = &app.health().await["queues"]["/auth/userinfo"];
    assert!(shed > 0 && unauthorized > 0, "shed {shed}, answered {unauthorized}");
    assert_eq!(
        q["shed_total"], shed,
        "every 503 was admission's, none a pool timeout: {q}"
    );
    let limit = q["concurrency_limit"].as_u64().unwrap();
    assert!(limit < 512, "the limit was lowered: {q}");
    let gauge = format!(r#"authplane_concurrency_limit{{route="/auth/userinfo"}} {limit}"#);
    assert!(app.metrics_text().await.contains(&gauge), "the gauge shows it");
    // Once the queue is gone, one request at a time goes straight through and the endpoint
    // leaves the overloaded state (each interval is judged when a request finishes in it).
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            assert_eq!(app.userinfo("after").await.status(), StatusCode::UNAUTHORIZED);
            let q = &app.health().await["queues"]["/auth/userinfo"];
            if q["overloaded"] == false {
                return;
            }
        }
    })
    .await
    .expect("the overload ended");
}

#[tokio::test]
async fn requests_past_the_timeout_get_503() {
    let store = Arc::new(TestStore::default());
    let app = spawn_with(
        test_config(|s| s.request_timeout = Some("200ms".parse().unwrap())),
        Some(store.clone()),
    )
    .await;
    store.hold();
    let res = app.userinfo("held").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(res).await["error"], "temporarily_unavailable");
    store.release();
}

#[tokio::test]
async fn shutdown_answers_in_flight_requests_then_stops() {
    let store = Arc::new(TestStore::default());
    let app = spawn_with(test_config(|_| {}), Some(store.clone())).await;
    let t = app.app_tokens("openid").await;
    // A revocation leaves purge work pending; shutdown flushes it.
    app.revoke((APP, APP_SECRET), &s(&t, "refresh_token")).await;
    assert_eq!(app.state.tokens.revocations().len(), 1);
    store.hold();
    let in_flight = tokio::spawn(
        app.client
            .get(app.url("/auth/userinfo"))
            .bearer_auth("held-token")
            .send(),
    );
    store.until_waiting(1).await;
    app.cancel.cancel();
    store.release();
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the in-flight request is answered"
    );
    let addr = app.addr;
    app.server.await.unwrap().unwrap();
    assert_eq!(
        app.state.tokens.revocations().len(),
        0,
        "pending revocations were flushed before exit"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
