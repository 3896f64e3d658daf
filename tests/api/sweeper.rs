//! The sweeper: removes what expired in bounded batches, runs on its interval, stops cleanly.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use authplane::store::RecordKind;
use authplane::store::memory::MemoryStore;
use reqwest::StatusCode;

use crate::helpers::*;
use crate::test_store::TestStore;

#[tokio::test]
async fn sweep_once_removes_every_kind_that_expired_and_nothing_else() {
    let memory = Arc::new(MemoryStore::new());
    let app = spawn_with(test_config(|_| {}), Some(memory.clone())).await;
    let t = app.app_tokens("openid").await; // a session, a consumed code, a grant and two tokens
    let session = app.login().await;
    app.code(&session, APP, APP_REDIRECT, "openid").await; // an unused code
    // Nothing has expired yet.
    let stats = app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert!(RecordKind::ALL.iter().all(|k| stats.removed(*k) == 0), "{stats:?}");
    // Past the code TTL only the codes go.
    app.advance(Duration::from_secs(61));
    let stats = app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(stats.removed(RecordKind::Codes), 2);
    assert_eq!(stats.removed(RecordKind::AccessTokens), 0);
    assert_eq!(app.userinfo(&s(&t, "access_token")).await.status(), StatusCode::OK);
    // Past every TTL, everything goes.
    app.advance(Duration::from_secs(31 * 86_400));
    let stats = app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(stats.removed(RecordKind::Sessions), 2);
    assert_eq!(stats.removed(RecordKind::AccessTokens), 1);
    assert_eq!(stats.removed(RecordKind::RefreshTokens), 1);
    assert_eq!(stats.removed(RecordKind::Grants), 1);
    for kind in RecordKind::ALL {
        assert_eq!(memory.len(kind), 0, "{kind:?}");
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_sweeper_removed_total{kind="codes"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("authplane_sweeper_run_duration_seconds_count 3"));
    let health = app.health().await;
    assert_eq!(health["sweeper"]["runs"], 3);
    assert_eq!(health["sweeper"]["last_removed"]["grants"], 1);
    assert!(health["sweeper"]["last_run_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn deletes_go_in_bounded_batches() {
    let store = Arc::new(TestStore::default());
    let app = spawn_with(test_config(|s| s.sweep_batch = Some(10)), Some(store.clone())).await;
    for _ in 0..35 {
        app.login().await;
    }
    app.advance(Duration::from_secs(9 * 3600));
    let before = store.calls.load(Ordering::SeqCst);
    let stats = app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(stats.removed(RecordKind::Sessions), 35);
    // 4 batches for the sessions (10, 10, 10, 5) and one for each other kind.
    let others = RecordKind::ALL.len() - 1;
    assert_eq!(store.calls.load(Ordering::SeqCst) - before, 4 + others);
}

#[tokio::test]
async fn the_sweeper_runs_on_its_interval() {
    let app = spawn_with(test_config(|s| s.sweep_interval = Some("20ms".parse().unwrap())), None).await;
    let mut runs = app.sweeper.status().subscribe();
    app.login().await;
    app.advance(Duration::from_secs(9 * 3600));
    tokio::time::timeout(Duration::from_secs(10), runs.wait_for(|n| *n >= 2))
        .await
        .unwrap()
        .unwrap();
    let health = app.health().await;
    assert!(health["sweeper"]["runs"].as_u64().unwrap() >= 2);
    let removed: u64 = app
        .metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with(r#"authplane_sweeper_removed_total{kind="sessions"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert_eq!(removed, 1);
    // And it stops with the server.
    app.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), app.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
