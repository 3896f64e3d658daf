//! docs/reference.md section 4 invariants that cut across endpoints: 1 (only hashes are kept or logged)
//! and 7 (internal errors never reach clients with detail).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use authplane::crypto::hash_token;
use reqwest::StatusCode;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::*;
use crate::test_store::{INTERNAL, NORMAL, TestStore, UNAVAILABLE};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures every log line of this (current-thread) test, the server's included.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    // tracing caches each callsite's interest. While one scoped subscriber is all there is, a
    // callsite first reached on another test's thread (which has none) is cached as "never", and
    // this capture would miss its events. A second dispatcher that lives as long as the binary
    // makes that interest "sometimes": each event then asks its own thread's subscriber.
    static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let out = Captured::default();
    let writer = out.clone();
    // The server's own text log (the request span's fields as it writes them, the span made
    // when first needed, as `init_tracing` sets it up), at every level.
    let subscriber = tracing_subscriber::registry().with(
        authplane::telemetry::text_layer(move || writer.clone(), false)
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
    );
    let subscriber = authplane::telemetry::RequestSpans::new(subscriber);
    (out, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_are_stored_and_logged_only_as_hashes() {
    let (logs, _guard) = capture();
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    let t = json(app.redeem_app(&code).await).await;
    let (access, refresh) = (s(&t, "access_token"), s(&t, "refresh_token"));
    app.userinfo(&access).await;
    let next = json(app.refresh_app(&refresh).await).await;
    app.revoke((APP, APP_SECRET), &s(&next, "refresh_token")).await;
    app.redeem_app(&code).await; // a replay, logged on the security target
    app.token(Some((APP, "wrong-secret")), &[("grant_type", "client_credentials")])
        .await;

    // Stores are keyed by SHA-256 and find nothing under the raw values.
    let store = app.store.as_ref().unwrap();
    assert!(store.get_session(&hash_token(&session)).await.unwrap().is_some());
    assert!(store.get_access_token(&hash_token(&access)).await.unwrap().is_some());
    let family = authplane::crypto::RefreshToken::parse(&refresh).unwrap().family;
    assert!(store.get_refresh_token(&family).await.unwrap().is_some());
    assert!(store.get_refresh_token(&hash_token(&refresh)).await.unwrap().is_none());
    let raw = authplane::domain::TokenHash(access.as_bytes()[..32].try_into().unwrap());
    assert!(store.get_access_token(&raw).await.unwrap().is_none());

    let text = logs.text();
    assert!(
        text.contains("authorization code replayed"),
        "the security log is captured: {text}"
    );
    for secret in [
        &session,
        &code,
        &access,
        &refresh,
        // The family secret every generation of the refresh token carries.
        &refresh.split('.').next().unwrap().to_owned(),
        &s(&next, "access_token"),
        &s(&next, "refresh_token"),
    ] {
        assert!(!text.contains(secret.as_str()), "a credential leaked into the logs");
    }
    for secret in [APP_SECRET, "wrong-secret", "wonderland", VERIFIER] {
        assert!(!text.contains(secret), "{secret} leaked into the logs");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn internal_errors_reach_clients_without_detail_and_are_logged_with_the_request_id() {
    let (logs, _guard) = capture();
    let store = Arc::new(TestStore::default());
    let app = spawn_with(test_config(|_| {}), Some(store.clone())).await;
    let t = app.app_tokens("openid").await;
    let access = s(&t, "access_token");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK, "warm the caches");
    store.set_mode(INTERNAL);
    let res = app.userinfo("never-seen-token").await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(res.text().await.unwrap(), r#"{"error":"server_error"}"#);
    let res = app
        .token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.text().await.unwrap(), r#"{"error":"server_error"}"#);

    store.set_mode(UNAVAILABLE);
    let res = app.refresh_app(&s(&t, "refresh_token")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.text().await.unwrap(), r#"{"error":"temporarily_unavailable"}"#);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Cached, still-valid records keep serving during the outage.
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);

    store.set_mode(NORMAL);
    assert_eq!(app.refresh_app(&s(&t, "refresh_token")).await.status(), StatusCode::OK);
    let text = logs.text();
    // Three failed requests (two 500s, one 503), each cause logged exactly once (a cause's chain
    // may span several lines; its first line names the target).
    assert_eq!(text.matches("authplane::error:").count(), 3, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("SECRET-DETAIL"))
        .expect("the cause is logged");
    // The cause's first line is inside the request span, which names the request id plainly.
    assert!(
        line.contains(&request_id) || text.contains(&format!("request{{request_id={request_id} ")),
        "{line}"
    );
}

/// The admin API and registration: passwords, their hashes, client secrets and registration
/// tokens appear in no answer (but the one that hands them out) and in no log line, at any level.
#[tokio::test(flavor = "current_thread")]
async fn admin_answers_and_logs_never_show_passwords_hashes_or_secrets() {
    use reqwest::Method;
    use serde_json::json;

    use crate::users_admin::{call, create_user};

    let (logs, _guard) = capture();
    let app = spawn_app().await;
    let admin = crate::admin::admin_token(&app).await;
    let mut answers = String::new();
    let created = create_user(&app, &admin, "iris", "iris-password-1").await;
    answers.push_str(&created.to_string());
    let path = format!("/admin/users/{}", s(&created, "sub"));
    for (method, path, body) in [
        (
            Method::PATCH,
            path.as_str(),
            Some(json!({"password": "iris-password-2"})),
        ),
        (Method::PATCH, path.as_str(), Some(json!({"password": 12345678}))),
        (
            Method::PATCH,
            path.as_str(),
            Some(json!({"disabled": "iris-password-3"})),
        ),
        (Method::GET, path.as_str(), None),
        (Method::GET, "/admin/users", None),
        (Method::GET, "/admin/clients", None),
    ] {
        let res = call(&app, method, path, Some(&admin), body).await;
        answers.push_str(&res.text().await.unwrap());
    }
    let reg = crate::registration::register(
        &app,
        Some(&admin),
        json!({"grant_types": ["client_credentials"], "scope": "profile"}),
    )
    .await;
    let (id, secret, token) = (
        s(&reg, "client_id"),
        s(&reg, "client_secret"),
        s(&reg, "registration_access_token"),
    );
    let reg_path = format!("/auth/register/{id}");
    for method in [Method::GET, Method::PUT] {
        let body = (method == Method::PUT).then(|| json!({"grant_types": ["client_credentials"]}));
        let res = call(&app, method, &reg_path, Some(&token), body).await;
        answers.push_str(&res.text().await.unwrap());
    }
    let res = call(&app, Method::GET, &format!("/admin/clients/{id}"), Some(&admin), None).await;
    answers.push_str(&res.text().await.unwrap());
    app.token(Some((&id, &secret)), &[("grant_type", "client_credentials")])
        .await;

    let text = logs.text();
    assert!(text.contains("admin action"), "the audit log is captured: {text}");
    for leak in ["iris-password-1", "iris-password-2", "iris-password-3", "12345678"] {
        assert!(!answers.contains(leak), "{leak} in an answer: {answers}");
        assert!(!text.contains(leak), "{leak} in the logs");
    }
    assert!(!answers.contains("$argon2"), "a hash in an answer: {answers}");
    assert!(!text.contains("$argon2"), "a hash in the logs");
    for leak in [&secret, &token] {
        assert!(!answers.contains(leak.as_str()), "a secret in a later answer");
        assert!(!text.contains(leak.as_str()), "a secret in the logs");
    }
}
