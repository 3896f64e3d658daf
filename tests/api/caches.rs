//! The caches: hits, coalesced misses, the negative cache, bounded size with eviction metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::StatusCode;

use crate::helpers::*;
use crate::test_store::TestStore;

fn cache<'a>(health: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &health["caches"][name]
}

#[tokio::test]
async fn repeated_userinfo_is_served_from_the_cache() {
    let store = Arc::new(TestStore::default());
    let app = spawn_with(test_config(|_| {}), Some(store.clone())).await;
    let t = app.app_tokens("openid").await;
    let token = s(&t, "access_token");
    assert_eq!(app.userinfo(&token).await.status(), StatusCode::OK);
    let calls = store.calls.load(Ordering::SeqCst);
    for _ in 0..50 {
        assert_eq!(app.userinfo(&token).await.status(), StatusCode::OK);
    }
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        calls,
        "no store call on a warm cache"
    );
    let h = app.health().await;
    assert!(cache(&h, "access_tokens")["hits"].as_u64().unwrap() >= 50);
    assert!(cache(&h, "access_tokens")["hit_rate"].as_f64().unwrap() > 0.9);
}

#[tokio::test]
async fn concurrent_misses_on_one_key_make_one_store_fetch() {
    let store = Arc::new(TestStore::default());
    let app = spawn_with(test_config(|_| {}), Some(store.clone())).await;
    store.hold();
    let calls = store.calls.load(Ordering::SeqCst);
    let all = futures::future::join_all((0..20).map(|_| app.userinfo("the-same-unknown-token")));
    let release = async {
        store.until_waiting(1).await;
        // All twenty are inside the handler (one at the store, the rest waiting on its load).
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while app.state.health.report().await.queues["/auth/userinfo"].in_flight < 20 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        store.release();
    };
    let (responses, ()) = tokio::join!(all, release);
    assert!(responses.iter().all(|r| r.status() == StatusCode::UNAUTHORIZED));
    assert_eq!(
        store.calls.load(Ordering::SeqCst) - calls,
        1,
        "one fetch for twenty concurrent misses"
    );
}

#[tokio::test]
async fn unknown_tokens_are_negatively_cached() {
    let store = Arc::new(TestStore::default());
    let app = spawn_with(test_config(|_| {}), Some(store.clone())).await;
    assert_eq!(app.userinfo("garbage").await.status(), StatusCode::UNAUTHORIZED);
    let calls = store.calls.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(app.userinfo("garbage").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(store.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test]
async fn client_credentials_tokens_on_the_memory_store_are_cached_at_first_use() {
    let app = spawn_with(test_config(|_| {}), None).await;
    let res = app
        .token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
        .await;
    let token = s(&json(res).await, "access_token");
    let h = app.health().await;
    assert_eq!(cache(&h, "access_tokens")["entries"], 0, "no write-through at issuance");
    assert_eq!(app.introspect(&token).await["active"], true);
    assert_eq!(app.introspect(&token).await["active"], true);
    let h = app.health().await;
    let c = cache(&h, "access_tokens");
    assert_eq!((c["misses"].as_u64(), c["hits"].as_u64()), (Some(1), Some(1)), "{c}");
}

#[tokio::test]
async fn caches_stay_bounded_and_count_evictions() {
    let app = spawn_with(test_config(|s| s.cache_capacity = Some(10)), None).await;
    let mut tokens = Vec::new();
    for _ in 0..60 {
        let res = app
            .token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
            .await;
        let token = s(&json(res).await, "access_token");
        // Cached at first use (the memory store has no write-through at issuance).
        assert_eq!(app.introspect(&token).await["active"], true);
        tokens.push(token);
    }
    let h = app.health().await;
    let entries = cache(&h, "access_tokens")["entries"].as_u64().unwrap();
    assert!(entries <= 10, "{entries} entries in a cache of 10");
    assert!(cache(&h, "access_tokens")["evictions"].as_u64().unwrap() >= 50);
    let metrics = app.metrics_text().await;
    let evicted: f64 = metrics
        .lines()
        .find(|l| l.starts_with(r#"authplane_cache_evictions_total{cache="access_tokens",cause="size"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(evicted >= 50.0, "{metrics}");
    // Evicted tokens still work: they are fetched from the store again.
    for t in &tokens[..5] {
        assert_eq!(app.introspect(t).await["active"], true);
    }
}
