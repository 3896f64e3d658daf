//! RFC 8414 metadata, health and metrics endpoints.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn both_metadata_documents_describe_the_server() {
    let app = spawn_with(
        test_config(|s| s.issuer = Some("https://auth.example/tenant/".into())),
        None,
    )
    .await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let m = json(res).await;
        assert_eq!(
            m["issuer"], "https://auth.example/tenant/",
            "issuer exactly as configured"
        );
        assert_eq!(
            m["authorization_endpoint"],
            "https://auth.example/tenant/auth/authorize"
        );
        assert_eq!(m["token_endpoint"], "https://auth.example/tenant/auth/token");
        assert_eq!(m["userinfo_endpoint"], "https://auth.example/tenant/auth/userinfo");
        assert_eq!(m["revocation_endpoint"], "https://auth.example/tenant/auth/revoke");
        assert_eq!(
            m["introspection_endpoint"],
            "https://auth.example/tenant/auth/introspect"
        );
        assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
        );
        assert_eq!(
            m["grant_types_supported"],
            serde_json::json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(
            m["scopes_supported"],
            serde_json::json!(["admin", "email", "offline_access", "openid", "profile"])
        );
    }
}

#[tokio::test]
async fn health_endpoints() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.client.get(app.url("/debug/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = json(res).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["store"]["kind"], "memory");
    assert_eq!(h["store"]["ok"], true);
    for cache in [
        "sessions",
        "access_tokens",
        "refresh_tokens",
        "grants",
        "client_secrets",
    ] {
        assert_eq!(h["caches"][cache]["capacity"], 100_000, "{cache}");
    }
    for route in ["/auth/authorize", "/auth/token", "/auth/userinfo", "/auth/par"] {
        assert_eq!(h["queues"][route]["capacity"], 1024);
        assert_eq!(h["queues"][route]["shed_total"], 0);
    }
    assert!(h["sweeper"]["interval_ms"].is_u64());
    assert_eq!(h["revocations_pending"], 0);
}

#[tokio::test]
async fn request_durations_are_labelled_by_matched_route() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    app.userinfo(&s(&t, "access_token")).await;
    app.client.get(app.url("/no/such/path")).send().await.unwrap();
    let text = app.metrics_text().await;
    assert!(
        text.contains(
            r#"http_server_request_duration_seconds_count{method="GET",route="/auth/userinfo",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"http_server_request_duration_seconds_count{method="POST",route="/auth/token",status="200"} 1"#
        )
    );
    assert!(!text.contains("/no/such/path"), "unmatched paths create no series");
    assert!(text.contains(r#"authplane_tokens_issued_total{grant_type="authorization_code"} 1"#));
}

/// The hot routes are timed (and admitted) in front of the router, by path and method, and so
/// are the timed routes (without admission): every method such a route serves gets its latency
/// series, and a method it does not serve gets a 405 and no series, as under a `route_layer`.
#[tokio::test]
async fn every_method_a_hot_route_serves_is_timed_and_no_other() {
    let app = spawn_app().await;
    // The hot routes, then the timed ones (introspection, revocation: timed without admission).
    let served: [(&str, &[&str]); 6] = [
        ("/auth/authorize", &["GET", "HEAD"]),
        ("/auth/token", &["POST"]),
        ("/auth/userinfo", &["GET", "HEAD", "POST"]),
        ("/auth/par", &["POST"]),
        ("/auth/introspect", &["POST"]),
        ("/auth/revoke", &["POST"]),
    ];
    for (path, methods) in served {
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let res = app.client.request(m, app.url(path)).send().await.unwrap();
            let status = res.status();
            let text = app.metrics_text().await;
            let series = format!(
                r#"http_server_request_duration_seconds_count{{method="{method}",route="{path}",status="{}"}} 1"#,
                status.as_u16()
            );
            if methods.contains(&method) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(text.contains(&series), "{method} {path}: {series} missing");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                let label = format!(r#"method="{method}",route="{path}""#);
                assert!(!text.contains(&label), "{method} {path}: a 405 has no series");
            }
        }
    }
}
