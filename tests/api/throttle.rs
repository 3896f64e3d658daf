//! Brute-force protection: per username, per client address, per client; 429 with Retry-After,
//! never a 5xx, and never a slowdown for other users or clients.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

async fn login(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    app.login_response(user, password).await
}

#[tokio::test]
async fn failed_logins_throttle_that_username_only() {
    let app = spawn_with(
        test_config(|s| {
            s.login_max_failures = Some(3);
            s.failure_window = Some("1m".parse().unwrap());
        }),
        None,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(login(&app, "alice", "guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let verified = app.state.sessions.hasher().verifications();
    let res = login(&app, "alice", "wonderland").await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(json(res).await["error"].is_string());
    assert_eq!(
        app.state.sessions.hasher().verifications(),
        verified,
        "no argon2 run for a throttled attempt"
    );
    // Another account is not slowed by alice's failures.
    assert_eq!(login(&app, "bob", "builder").await.status(), StatusCode::OK);
    // Unknown usernames are throttled the same way (no enumeration by behaviour).
    for _ in 0..3 {
        assert_eq!(login(&app, "mallory", "x").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&app, "mallory", "x").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // After the window, alice may log in again, and success clears her count.
    app.advance(Duration::from_secs(61));
    assert_eq!(login(&app, "alice", "wonderland").await.status(), StatusCode::OK);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_throttled_total{key="username"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn failed_logins_throttle_the_client_address() {
    let app = spawn_with(
        test_config(|s| {
            s.login_max_failures = Some(100);
            s.address_max_failures = Some(5);
        }),
        None,
    )
    .await;
    for i in 0..5 {
        assert_eq!(
            login(&app, &format!("user{i}"), "x").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = login(&app, "bob", "builder").await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "this address spent its failures"
    );
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn failed_client_authentications_throttle_that_client_only() {
    let app = spawn_with(test_config(|s| s.client_max_failures = Some(3)), None).await;
    let cc = [("grant_type", "client_credentials")];
    for _ in 0..3 {
        assert_eq!(
            app.token(Some((APP, "wrong")), &cc).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = app.token(Some((APP, APP_SECRET)), &cc).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        app.token(Some((OTHER, OTHER_SECRET)), &cc).await.status(),
        StatusCode::OK,
        "other clients work"
    );
    app.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(app.token(Some((APP, APP_SECRET)), &cc).await.status(), StatusCode::OK);
}

/// Sends `n` POSTs to `path` on `addr`, each over its own connection, all but the last byte
/// first; then releases the last bytes together, so every request reaches the server at the
/// same moment. `request(i)` gives the headers after the request line (without Content-Length)
/// and the body. Returns the status codes.
async fn post_together(
    addr: std::net::SocketAddr,
    path: &str,
    n: usize,
    request: impl Fn(usize) -> (String, String),
) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut held = Vec::new();
    for i in 0..n {
        let (headers, body) = request(i);
        let text = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             {headers}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (head, last) = text.split_at(text.len() - 1);
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push((stream, last.to_owned()));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = held
        .into_iter()
        .map(|(mut stream, last)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                stream.write_all(last.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer).await.unwrap();
                let answer = String::from_utf8_lossy(&answer);
                answer.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn concurrent_wrong_passwords_get_no_more_tries_than_sequential_ones() {
    let app = spawn_with(
        test_config(|s| {
            s.login_max_failures = Some(3);
            s.address_max_failures = Some(1000);
        }),
        None,
    )
    .await;
    let verified = app.state.sessions.hasher().verifications();
    let statuses = post_together(app.addr, "/auth/login", 40, |i| {
        (
            "accept: application/json\r\n".to_owned(),
            format!("username=alice&password=guess{i}"),
        )
    })
    .await;
    assert_eq!(count(&statuses, 401), 3, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 37, "{statuses:?}");
    assert_eq!(
        app.state.sessions.hasher().verifications() - verified,
        3,
        "only the counted guesses were verified"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_throttled_total{key="username"} 37"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn concurrent_wrong_client_secrets_get_no_more_tries_than_sequential_ones() {
    let app = spawn_with(test_config(|s| s.client_max_failures = Some(3)), None).await;
    // Forty different guesses at once: three are verified, the rest refused before any work.
    let statuses = post_together(app.addr, "/auth/token", 40, |i| {
        let basic = format!("authorization: Basic {}\r\n", base64_basic(APP, &format!("wrong{i}")));
        (basic, "grant_type=client_credentials".to_owned())
    })
    .await;
    assert_eq!(count(&statuses, 401), 3, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 37, "{statuses:?}");
}

#[tokio::test]
async fn a_burst_of_the_applications_own_first_requests_is_not_throttled() {
    let app = spawn_with(test_config(|s| s.client_max_failures = Some(3)), None).await;
    // Forty requests with the right secret at the same moment share one verification.
    let basic = format!("authorization: Basic {}\r\n", base64_basic(APP, APP_SECRET));
    let statuses = post_together(app.addr, "/auth/token", 40, |_| {
        (basic.clone(), "grant_type=client_credentials".to_owned())
    })
    .await;
    assert_eq!(count(&statuses, 200), 40, "{statuses:?}");
}

#[tokio::test]
async fn wrong_secrets_from_one_address_never_lock_the_client_out_of_another() {
    let app = spawn_with(test_config(|s| s.client_max_failures = Some(3)), None).await;
    let cc = [("grant_type", "client_credentials")];
    // The attacker, from 127.0.0.1 (the test's default client).
    for _ in 0..3 {
        assert_eq!(
            app.token(Some((APP, "wrong")), &cc).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.token(Some((APP, APP_SECRET)), &cc).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's address is throttled for this client"
    );
    // The application itself, from another address.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    for _ in 0..5 {
        let res = elsewhere
            .post(app.url("/auth/token"))
            .basic_auth(APP, Some(APP_SECRET))
            .form(&cc)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "the correct secret works from another address"
        );
    }
}

fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}
