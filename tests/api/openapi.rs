//! The OpenAPI description (openapi/authplane.json) matches the server: every documented
//! operation is routed, every other method on a documented path is 405, and what a plain request
//! gets back is one of the documented answers. schemathesis (scripts/schemathesis) then fuzzes the
//! live server against the same file.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

fn spec() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/authplane.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let app = spawn_app().await;
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    let all = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];
    for (path, ops) in paths {
        let ops = ops.as_object().unwrap();
        for method in &all {
            let documented = ops.get(&method.as_str().to_lowercase());
            let res = app
                .client
                .request(method.clone(), app.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("")
                .send()
                .await
                .unwrap();
            let status = res.status();
            match documented {
                None => assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented"
                ),
                Some(op) => {
                    assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                    let responses = op["responses"].as_object().unwrap();
                    assert!(
                        responses.contains_key(status.as_str()),
                        "{method} {path} answered an undocumented {status}"
                    );
                }
            }
        }
    }
    // And the contract's endpoints are all documented.
    for path in [
        "/auth/login",
        "/auth/logout",
        "/auth/authorize",
        "/auth/token",
        "/auth/userinfo",
        "/auth/revoke",
        "/auth/introspect",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/metrics",
        "/debug/health",
        "/healthz",
        "/readyz",
        "/admin/keys/rotate",
        "/admin/users",
        "/admin/users/{sub}",
        "/admin/clients",
        "/admin/clients/{client_id}",
        "/auth/register",
        "/auth/register/{client_id}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} is missing from the OpenAPI description"
        );
    }
}

#[tokio::test]
async fn successful_answers_have_the_documented_required_fields() {
    let app = spawn_app().await;
    let spec = spec();
    let schema = |name: &str| spec["components"]["schemas"][name].clone();
    let required = |v: &Value, s: &Value| {
        for field in s["required"].as_array().unwrap() {
            assert!(v.get(field.as_str().unwrap()).is_some(), "{field} missing in {v}");
        }
    };
    let t = app.app_tokens("openid profile email").await;
    required(&t, &schema("Token"));
    required(
        &json(app.userinfo(&s(&t, "access_token")).await).await,
        &schema("UserInfo"),
    );
    required(&app.introspect(&s(&t, "access_token")).await, &schema("Introspection"));
    let meta = json(
        app.client
            .get(app.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    required(&meta, &schema("Metadata"));
    let err = json(app.userinfo("nope").await).await;
    required(&err, &schema("Error"));
}
