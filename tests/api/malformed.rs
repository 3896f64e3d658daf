//! A table of malformed requests against every endpoint: each gets a 4xx whose body is empty or a
//! JSON object with an `error` string, never a 5xx, a panic or a framework's default text.

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const FORM: &str = "application/x-www-form-urlencoded";

struct Case {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    authorization: Option<&'static str>,
    body: Vec<u8>,
    expect: StatusCode,
}

fn case(method: Method, path: &'static str, ct: Option<&'static str>, body: &[u8], expect: StatusCode) -> Case {
    Case {
        method,
        path,
        content_type: ct,
        authorization: None,
        body: body.to_vec(),
        expect,
    }
}

async fn assert_error_body(res: reqwest::Response, what: &str) {
    let status = res.status();
    let body = res.bytes().await.unwrap();
    if body.is_empty() {
        return;
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{what}: {status} body is not JSON: {body:?}"));
    assert!(v["error"].is_string(), "{what}: {v}");
}

#[tokio::test]
async fn malformed_requests_get_oauth_format_4xx() {
    let app = spawn_app().await;
    let form_posts = [
        "/auth/login",
        "/auth/token",
        "/auth/revoke",
        "/auth/introspect",
        "/auth/userinfo",
    ];
    let mut cases = Vec::new();
    for path in form_posts {
        cases.push(case(
            Method::POST,
            path,
            Some("application/json"),
            br#"{"a":1}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ));
        cases.push(case(
            Method::POST,
            path,
            Some("text/plain"),
            b"a=b",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ));
        cases.push(case(
            Method::POST,
            path,
            Some(FORM),
            b"token=%zz&username=%",
            StatusCode::BAD_REQUEST,
        ));
        cases.push(case(
            Method::POST,
            path,
            Some(FORM),
            b"token=%ff%fe&username=%c3%28",
            StatusCode::BAD_REQUEST,
        ));
        cases.push(case(
            Method::POST,
            path,
            Some(FORM),
            &vec![b'a'; 64 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
        cases.push(case(
            Method::PUT,
            path,
            Some(FORM),
            b"a=b",
            StatusCode::METHOD_NOT_ALLOWED,
        ));
        cases.push(case(Method::DELETE, path, None, b"", StatusCode::METHOD_NOT_ALLOWED));
    }
    for path in ["/auth/login", "/auth/token", "/auth/revoke", "/auth/introspect"] {
        let dup: &[u8] = match path {
            "/auth/login" => b"username=alice&username=alice&password=wonderland",
            _ => {
                b"client_id=demo-app&client_id=demo-app&client_secret=demo-secret&token=x&grant_type=client_credentials"
            }
        };
        cases.push(case(Method::POST, path, Some(FORM), dup, StatusCode::BAD_REQUEST));
    }
    for path in ["/auth/token", "/auth/revoke", "/auth/introspect"] {
        for auth in [
            "Basic !!!notbase64",
            "Basic ZGVtby1hcHA=",
            "Basic",
            "Basic OnNlY3JldA==",
        ] {
            let mut c = case(
                Method::POST,
                path,
                Some(FORM),
                b"grant_type=client_credentials&token=x",
                StatusCode::UNAUTHORIZED,
            );
            c.authorization = Some(auth);
            cases.push(c);
        }
    }
    let mut c = case(Method::GET, "/auth/userinfo", None, b"", StatusCode::UNAUTHORIZED);
    c.authorization = Some("Bearer not a token");
    cases.push(c);
    for path in [
        "/auth/authorize",
        "/.well-known/openid-configuration",
        "/healthz",
        "/metrics",
    ] {
        cases.push(case(
            Method::POST,
            path,
            Some(FORM),
            b"a=b",
            StatusCode::METHOD_NOT_ALLOWED,
        ));
    }
    cases.push(case(
        Method::GET,
        "/auth/authorize?client_id=%zz",
        None,
        b"",
        StatusCode::BAD_REQUEST,
    ));
    cases.push(case(
        Method::GET,
        "/auth/authorize?client_id=%ff",
        None,
        b"",
        StatusCode::BAD_REQUEST,
    ));
    cases.push(case(
        Method::GET,
        "/auth/authorize?client_id=demo-app&client_id=demo-app",
        None,
        b"",
        StatusCode::BAD_REQUEST,
    ));
    cases.push(case(
        Method::GET,
        "/auth/login?return_to=%zz",
        None,
        b"",
        StatusCode::BAD_REQUEST,
    ));
    cases.push(case(Method::GET, "/nope", None, b"", StatusCode::NOT_FOUND));
    cases.push(case(
        Method::GET,
        "/auth/token",
        None,
        b"",
        StatusCode::METHOD_NOT_ALLOWED,
    ));

    for c in cases {
        let what = format!("{} {} {:?} {:?}", c.method, c.path, c.content_type, c.authorization);
        let mut req = app
            .client
            .request(c.method.clone(), app.url(c.path))
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = c.authorization {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), c.expect, "{what}");
        assert_error_body(res, &what).await;
    }
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let huge = "x".repeat(512 * 1024);
    // reqwest may fail to send it all if the server closes early, so speak HTTP/1.1 by hand.
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let req = format!("GET /auth/userinfo HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n");
    let _ = sock.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(body.is_empty() || body.contains("\"error\""), "{body}");
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failed_request_changes_nothing() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    // Duplicated parameters and an unknown grant type neither consume nor burn the code.
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[("grant_type", "authorization_code"), ("code", &code), ("code", &code)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .token(
            Some((APP, "wrong")),
            &[("grant_type", "authorization_code"), ("code", &code)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.redeem_app(&code).await.status(), StatusCode::OK);
}
