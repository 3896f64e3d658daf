//! Traces over OTLP/HTTP: a receiver inside the test sees the request, cache and store spans.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::*;

type Spans = Arc<Mutex<Vec<Value>>>;

/// An OTLP/HTTP (JSON) receiver on its own thread and runtime, so a blocking flush from the test
/// cannot starve it. Returns its base URL.
fn receiver(spans: Spans) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/v1/traces",
                post(move |body: axum::body::Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            spans
                                .lock()
                                .unwrap()
                                .extend(ss["spans"].as_array().into_iter().flatten().cloned());
                        }
                    }
                    "{}"
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

fn attr(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
}

#[tokio::test(flavor = "current_thread")]
async fn request_cache_and_store_spans_reach_the_collector() {
    let spans: Spans = Arc::default();
    let endpoint = receiver(spans.clone());
    // Built off the runtime: the exporter's blocking client may not be created inside one.
    let (layer, guard) = std::thread::spawn(move || {
        authplane::telemetry::otlp_layer::<tracing_subscriber::Registry>(Some(&endpoint)).unwrap()
    })
    .join()
    .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let _default = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    assert_eq!(
        app.userinfo("an-unknown-token").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = app.userinfo(&s(&t, "access_token")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    std::thread::spawn(move || guard.flush()).join().unwrap();

    let spans = spans.lock().unwrap().clone();
    let named = |n: &'static str| spans.iter().filter(move |s| s["name"] == n);
    let request = named("request").find(|s| attr(s, "request_id").as_deref() == Some(&request_id));
    assert!(request.is_some(), "the request span with its id: {spans:?}");
    let outcomes: Vec<_> = named("cache.lookup").filter_map(|s| attr(s, "outcome")).collect();
    assert!(
        outcomes.iter().any(|o| o == "hit") && outcomes.iter().any(|o| o == "miss"),
        "{outcomes:?}"
    );
    let ops: Vec<_> = named("store").filter_map(|s| attr(s, "op")).collect();
    assert!(ops.iter().any(|o| o == "get_access_token"), "{ops:?}");
    assert!(named("cache.lookup").all(|s| attr(s, "cache").is_some()));
}
