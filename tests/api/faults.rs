//! PostgreSQL stopped under load: hot endpoints answer 503 at once (never a 500, never a hang),
//! `/readyz` turns not ready, cached credentials keep working, and service resumes by itself when
//! the database returns, with no issued token lost. The test runs its own cluster (initdb and
//! pg_ctl on a unix socket in a temporary folder), so it can stop and start it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

struct OwnCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn as_postgres(bin: &std::path::Path, tool: &str) -> Command {
    // initdb and postgres refuse to run as root; CI and these machines run tests as root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl OwnCluster {
    fn new() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (scripts/ensure-postgres installs them)")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = tempfile::Builder::new().prefix("authplane-pg-").tempdir().unwrap();
        let _ = Command::new("chown").args(["postgres"]).arg(dir.path()).status();
        let data = dir.path().join("data");
        let out = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let c = Self { dir, bin };
        c.start();
        c
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let opts = format!("-c listen_addresses='' -k {}", self.dir.path().display());
        let out = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &opts, "-w"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        self.pg_ctl(&["start"]);
    }

    /// As abrupt as a crash: no goodbye to the clients.
    fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    fn url(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.path().display())
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[tokio::test]
async fn postgres_down_means_503_and_recovery_is_automatic() {
    let pg = OwnCluster::new();
    let url = pg.url();
    let cfg = test_config(move |s| {
        s.store = Some(authplane::config::StoreKind::Postgres);
        s.database_url = Some(url);
        s.key_encryption_key = Some(authplane_testkit::fixture::KEY_ENCRYPTION_KEY.parse().unwrap());
        s.pool_timeout = Some("500ms".parse().unwrap());
    });
    let app = spawn_with(cfg, None).await;
    let t = app.app_tokens("openid").await;
    let access = s(&t, "access_token");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK, "warm the caches");
    let cc = || app.token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")]);
    assert_eq!(cc().await.status(), StatusCode::OK);

    pg.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let res = cc().await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
        assert_eq!(res.text().await.unwrap(), r#"{"error":"temporarily_unavailable"}"#);
        assert!(started.elapsed() < Duration::from_secs(10), "answered, not hung");
    }
    let res = app.refresh_app(&s(&t, "refresh_token")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.client.get(app.url("/readyz")).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let h = app.health().await;
    assert_eq!(h["status"], "degraded");
    // What is cached and still valid keeps working.
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);

    pg.start();
    let start = Instant::now();
    while app.client.get(app.url("/readyz")).send().await.unwrap().status() != StatusCode::OK {
        assert!(start.elapsed() < Duration::from_secs(30), "recovers by itself");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut listening = app.listening.clone();
    tokio::time::timeout(Duration::from_secs(30), listening.wait_for(|c| *c))
        .await
        .unwrap()
        .unwrap();
    // Every token issued before the outage is still there (the caches were flushed on reconnect).
    let res = app.refresh_app(&s(&t, "refresh_token")).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    assert_eq!(cc().await.status(), StatusCode::OK);
}
