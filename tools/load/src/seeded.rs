//! `serve-seeded`: the real server (`authplane serve`, every flag of it) on a memory store that
//! already holds `--live` unexpired and `--expired` expired access tokens, so a run can measure
//! the hot paths while the sweeper works through a large store (`scripts/sweep-stall`) without
//! first spending minutes of load to fill it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use authplane::config::{Config, Settings};
use authplane::domain::{Scope, Timestamp};
use authplane::store::memory::MemoryStore;
use authplane::store::{AccessTokenRecord, Store};
use authplane::{Application, Clock, Options, crypto};

/// Live tokens expire this long after start: long after any run, so none of them is swept.
const LIVE_FOR: Duration = Duration::from_secs(24 * 3600);

pub async fn serve(live: u64, expired: u64, settings: Settings) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(settings)?;
    let _guard = authplane::telemetry::init_tracing(cfg.log_format, None)?;
    let store = Arc::new(MemoryStore::new());
    let now = Clock::System.now();
    let client: Arc<str> = Arc::from("demo-app");
    let scope = Scope::parse("openid profile email").unwrap_or_default();
    for i in 0..live + expired {
        let expires_at = if i < live {
            now.plus(LIVE_FOR)
        } else {
            Timestamp::from_millis(now.millis() - 1_000)
        };
        let record = AccessTokenRecord {
            jkt: None,
            resources: Default::default(),
            hash: crypto::hash_token(&format!("seeded-{i}")),
            client_id: Arc::clone(&client),
            sub: None,
            scope: scope.clone(),
            grant_id: None,
            issued_at: now,
            expires_at,
            revoked_at: None,
        };
        store.insert_access_token(&record).await?;
    }
    tracing::info!(live, expired, "store seeded");
    let app = Application::build_with(
        cfg,
        Options {
            store: Some(store),
            ..Options::default()
        },
    )
    .await?;
    let cancel = app.shutdown_token();
    let run = app.run();
    tokio::pin!(run);
    tokio::select! {
        res = &mut run => return res.map(|()| ExitCode::SUCCESS),
        () = crate::baseline::shutdown() => cancel.cancel(),
    }
    run.await?;
    Ok(ExitCode::SUCCESS)
}
