//! Signals other than SIGTERM (invariant 13 of docs/reference.md): SIGHUP and SIGUSR1 never kill the server, SIGQUIT
//! drains like SIGTERM. The real binary, with the demo config.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Reads the server's log until a line contains `needle`; returns that line.
async fn wait_for(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the log within 30 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("the log ended before {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn send(child: &Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_and_sigusr1_are_ignored_and_sigquit_drains_and_exits_zero() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", "config/authplane.toml"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = wait_for(&mut lines, "listening").await;
    let addr = listening
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let health = format!("http://{addr}/healthz");
    let client = reqwest::Client::new();

    for signal in ["HUP", "USR1"] {
        send(&child, signal);
        wait_for(&mut lines, &format!("SIG{signal} received; ignored")).await;
        let res = client.get(&health).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "still serving after SIG{signal}");
    }

    send(&child, "QUIT");
    wait_for(&mut lines, "SIGQUIT received; shutting down").await;
    wait_for(&mut lines, "sweeper stopped").await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "SIGQUIT drains and exits 0");
}
