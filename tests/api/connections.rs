//! What a client can make the server hold (invariant 12 of docs/reference.md): header, body and idle deadlines, the
//! connection cap, header bytes; shutdown closing idle and stalled connections at once; one Host
//! header; the management listener; HSTS. Real sockets against a real listening server.

use std::net::SocketAddr;
use std::time::Duration;

use authplane::{Application, Options};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Longest wait for something the server must do; far above every deadline set below.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until the server closes the connection; returns what it sent. Fails the test when the
/// server keeps the connection open past [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one answer with a `Content-Length` (keep-alive): head and body.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole answer");
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if out.len() >= end + 4 + len {
                    return;
                }
            }
        }
    })
    .await
    .expect("an answer");
    String::from_utf8_lossy(&out).into_owned()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n";

#[tokio::test]
async fn headers_that_never_end_close_the_connection_after_the_header_timeout() {
    let app = spawn_with(
        test_config(|s| {
            s.header_timeout = Some("1s".parse().unwrap());
            s.idle_timeout = Some("1h".parse().unwrap());
        }),
        None,
    )
    .await;
    let mut slow = connect(app.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-slow: ")
        .await
        .unwrap();
    read_until_closed(&mut slow).await;
    // A connection that sends nothing at all gets the same deadline.
    let mut silent = connect(app.addr).await;
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_header_one() {
    let app = spawn_with(
        test_config(|s| {
            s.header_timeout = Some("1h".parse().unwrap());
            s.idle_timeout = Some("1s".parse().unwrap());
        }),
        None,
    )
    .await;
    let mut conn = connect(app.addr).await;
    conn.write_all(HEALTHZ).await.unwrap();
    assert!(read_answer(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle now: closed by the idle deadline (1 s), though the header deadline is an hour.
    assert_eq!(read_until_closed(&mut conn).await, "");
}

#[tokio::test]
async fn a_body_that_never_ends_is_408_after_the_body_timeout() {
    let app = spawn_with(test_config(|s| s.body_timeout = Some("1s".parse().unwrap())), None).await;
    let mut conn = connect(app.addr).await;
    conn.write_all(
        b"POST /auth/token HTTP/1.1\r\nhost: t\r\ncontent-type: application/x-www-form-urlencoded\r\n\
          content-length: 100\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
}

/// The administration API reads its JSON bodies under the same deadline, and says so the same way.
#[tokio::test]
async fn an_admin_body_that_never_ends_is_408_too() {
    let app = spawn_with(test_config(|s| s.body_timeout = Some("1s".parse().unwrap())), None).await;
    let token = crate::admin::admin_token(&app).await;
    let users = || async {
        let res = crate::users_admin::call(&app, reqwest::Method::GET, "/admin/users", Some(&token), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.unwrap()
    };
    let before = users().await;
    let mut conn = connect(app.addr).await;
    let head = format!(
        "POST /admin/users HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"username\":"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
    assert_eq!(users().await, before, "nothing changed");
}

#[tokio::test]
async fn too_many_header_bytes_are_431_with_an_empty_body() {
    let app = spawn_with(
        test_config(|s| s.max_header_bytes = Some("4KiB".parse().unwrap())),
        None,
    )
    .await;
    let mut conn = connect(app.addr).await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    conn.write_all(big.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "no framework text: {answer:?}");
    // Within the limit, the same request is served.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-big", "a".repeat(1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_and_the_open_ones_are_served() {
    let app = spawn_with(test_config(|s| s.max_connections = Some(2)), None).await;
    let mut a = connect(app.addr).await;
    let mut b = connect(app.addr).await;
    for c in [&mut a, &mut b] {
        c.write_all(HEALTHZ).await.unwrap();
        assert!(read_answer(c).await.starts_with("HTTP/1.1 200"));
    }
    // A third connection lands in the backlog: its request is not read yet.
    let mut c = connect(app.addr).await;
    c.write_all(HEALTHZ).await.unwrap();
    // The two it has are still served, again and again.
    for _ in 0..3 {
        for conn in [&mut a, &mut b] {
            conn.write_all(HEALTHZ).await.unwrap();
            assert!(read_answer(conn).await.starts_with("HTTP/1.1 200"));
        }
    }
    let mut one = [0u8; 1];
    // A negative check can only wait a while: the third is not answered while the cap is full.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.peek(&mut one))
            .await
            .is_err(),
        "a connection past the cap was served"
    );
    // One leaves: the waiting one is accepted and answered.
    drop(a);
    assert!(read_answer(&mut c).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_closes_idle_and_stalled_connections_at_once() {
    let app = spawn_with(test_config(|s| s.shutdown_grace = Some("1h".parse().unwrap())), None).await;
    let mut idle = connect(app.addr).await;
    idle.write_all(HEALTHZ).await.unwrap();
    assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut stalled_headers = connect(app.addr).await;
    stalled_headers
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let mut stalled_body = connect(app.addr).await;
    stalled_body
        .write_all(
            b"POST /auth/token HTTP/1.1\r\nhost: t\r\ncontent-type: application/x-www-form-urlencoded\r\n\
              content-length: 100\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    // Let the stalled body reach its handler (the request is in progress), by a round trip on
    // another connection after it.
    assert_eq!(
        app.client.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    app.cancel.cancel();
    // The grace is an hour: ending well within PATIENCE means nothing waited for it.
    let ended = tokio::time::timeout(PATIENCE, app.server).await;
    assert!(ended.is_ok(), "shutdown waited for idle or stalled connections");
    read_until_closed(&mut idle).await;
    read_until_closed(&mut stalled_headers).await;
    let answer = read_until_closed(&mut stalled_body).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_request_without_exactly_one_host_is_400() {
    let app = spawn_app().await;
    for request in [
        &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
        &b"GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"[..],
    ] {
        let mut conn = connect(app.addr).await;
        conn.write_all(request).await.unwrap();
        let answer = read_answer(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
    }
    // HTTP/1.0 may leave it out.
    let mut conn = connect(app.addr).await;
    conn.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(read_until_closed(&mut conn).await.starts_with("HTTP/1.0 200"));
}

#[tokio::test]
async fn hsts_is_sent_when_the_issuer_is_https_only() {
    let http = spawn_app().await;
    let res = http.client.get(http.url("/healthz")).send().await.unwrap();
    assert!(!res.headers().contains_key("strict-transport-security"));
    let https = spawn_with(test_config(|s| s.issuer = Some("https://id.example.test".into())), None).await;
    let res = https.client.get(https.url("/healthz")).send().await.unwrap();
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn management_listen_moves_metrics_and_health_off_the_public_port() {
    let cfg = test_config(|s| s.management_listen = Some("127.0.0.1:0".parse().unwrap()));
    let app = Application::build_with(cfg, Options::default()).await.unwrap();
    let public = format!("http://{}", app.local_addr().unwrap());
    let management = format!("http://{}", app.management_addr().unwrap());
    let cancel = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::new();
    for path in ["/metrics", "/debug/health"] {
        let res = client.get(format!("{public}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path} left the public port");
        let res = client.get(format!("{management}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path} on the management port");
    }
    let res = client.get(format!("{public}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the probes stay public");
    let res = client.get(format!("{management}/auth/userinfo")).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "no protocol endpoint on the management port"
    );
    cancel.cancel();
    tokio::time::timeout(PATIENCE, server).await.unwrap().unwrap().unwrap();
}
