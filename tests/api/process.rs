//! The real binary: `authplane serve` under load, stopped with SIGTERM (invariant 9 of docs/reference.md).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;

#[tokio::test]
async fn sigterm_under_load_answers_admitted_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = authplane_testkit::fixture::write(dir.path()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "5s", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        log.push(line.clone());
        if let Some(rest) = line.split("addr=").nth(1).filter(|_| line.contains("listening")) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    // Warm up: the first request pays the secret verification.
    let res = client
        .post(format!("{base}/auth/token"))
        .basic_auth(APP, Some(APP_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (client, base, stop, ok, bad) = (client.clone(), base.clone(), stop.clone(), ok.clone(), bad.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let res = client
                    .post(format!("{base}/auth/token"))
                    .basic_auth(APP, Some(APP_SECRET))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => 0,
                    Ok(_) => bad.fetch_add(1, Ordering::Relaxed),
                    // Refused or closed: not admitted (the listener is gone).
                    Err(_) => break,
                };
            }
        }));
    }
    while ok.load(Ordering::Relaxed) < 200 {
        tokio::task::yield_now().await;
    }
    let pid = child.id().unwrap().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits")
        .unwrap();
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(took < Duration::from_secs(5), "within the grace: {took:?}");
    assert_eq!(bad.load(Ordering::Relaxed), 0, "no error answers during shutdown");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("sweeper stopped"), "{log}");
    assert!(log.contains("flushed pending revocations"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(!log.contains(APP_SECRET));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = authplane_testkit::fixture::write(dir.path()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
        if v["fields"]["message"] == "listening" {
            assert!(v["fields"]["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
            break;
        }
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
