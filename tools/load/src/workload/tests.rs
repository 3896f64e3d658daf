//! The modes against a real server: the fixture's app on 127.0.0.1:0 (authplane-testkit), the
//! load tool's own client speaking to it.

use std::process::ExitCode;

use authplane_testkit::{ALICE, ALICE_PASSWORD, APP, APP_SECRET, TestApp, spawn_app};
use clap::Parser;

use super::*;

fn client(app: &TestApp) -> Client {
    Client::new(&app.base, APP, APP_SECRET, Duration::from_secs(10)).unwrap()
}

/// The introspect mode's workload over `tokens`, as `run` builds it after setup.
fn introspect_workload(client: Client, tokens: Vec<String>) -> Workload {
    Workload {
        mode: Mode::Introspect,
        client,
        stats: Stats::new(ENDPOINTS).unwrap(),
        sessions: Vec::new(),
        session_picker: Picker::new(0, None),
        token_picker: Picker::new(tokens.len(), None),
        access_tokens: tokens,
        refresh_pool: Mutex::new(Vec::new()),
        code_pool: Mutex::new(Vec::new()),
        dpop: None,
        proof_pool: Mutex::new(Vec::new()),
        presigned: false,
        userinfo_per_flow: 0,
    }
}

/// (ok, errors, answers by status) of the introspection endpoint.
fn introspections(stats: &Stats) -> (u64, u64, Vec<(String, u64)>) {
    let r = stats.report(Duration::from_secs(1));
    let e = &r[INTROSPECT];
    (e.ok, e.errors, e.by_status.clone().into_iter().collect())
}

#[tokio::test]
async fn introspect_counts_active_answers_and_fails_on_a_revoked_token() {
    let app = spawn_app().await;
    let c = client(&app);
    let setup = Stats::new(ENDPOINTS).unwrap();
    let token = c.user_access_token(&setup, ALICE, ALICE_PASSWORD).await.unwrap();
    let w = introspect_workload(c, vec![token.clone()]);

    w.run(Instant::now(), true).await;
    w.run(Instant::now(), true).await;
    assert_eq!(introspections(&w.stats), (2, 0, vec![("200".into(), 2)]));

    // Revoked: the server still answers 200, `"active": false`; the run must not count it.
    assert_eq!(app.revoke((APP, APP_SECRET), &token).await.status(), 200);
    assert_eq!(app.introspect(&token).await["active"], false);
    w.run(Instant::now(), true).await;
    assert_eq!(
        introspections(&w.stats),
        (2, 1, vec![("200".into(), 2), ("unexpected:200".into(), 1)])
    );
    assert_eq!(w.stats.errors(), 1);
}

#[tokio::test]
async fn introspect_fails_on_a_token_the_server_never_issued() {
    let app = spawn_app().await;
    let w = introspect_workload(client(&app), vec!["not-a-token".into()]);
    w.run(Instant::now(), true).await;
    assert_eq!(introspections(&w.stats), (0, 1, vec![("unexpected:200".into(), 1)]));
}

#[tokio::test]
async fn introspect_fails_on_a_client_that_cannot_authenticate() {
    let app = spawn_app().await;
    let setup = Stats::new(ENDPOINTS).unwrap();
    let token = client(&app)
        .user_access_token(&setup, ALICE, ALICE_PASSWORD)
        .await
        .unwrap();
    let wrong = Client::new(&app.base, APP, "not-the-secret", Duration::from_secs(10)).unwrap();
    let w = introspect_workload(wrong, vec![token]);
    w.run(Instant::now(), true).await;
    assert_eq!(introspections(&w.stats), (0, 1, vec![("unexpected:401".into(), 1)]));
}

/// The whole mode from its command line: setup (logins, the pool, the check that the pool is
/// active), a short open loop at a low rate, no errors.
#[tokio::test]
async fn introspect_mode_runs_without_errors() {
    let app = spawn_app().await;
    let cli = crate::Cli::try_parse_from([
        "authplane-load",
        "introspect",
        "--url",
        &app.base,
        "--rate",
        "40",
        "--duration",
        "250ms",
        "--warmup",
        "50ms",
        "--vus",
        "2",
        "--tokens",
        "4",
        "--zipf",
        "1.1",
        "--fail-on-errors",
    ])
    .unwrap();
    assert!(matches!(cli.command, crate::Command::Introspect(_)));
    assert_eq!(crate::run(cli.command).await.unwrap(), ExitCode::SUCCESS);
}
