//! `invalidation-window`: on two nodes sharing one PostgreSQL store, how long node B keeps
//! accepting a token after node A revoked it (invariant 6 of docs/reference.md: bounded, never longer than
//! `--cache-ttl`). Per trial: a client_credentials token from A; introspection on B until it is
//! active (so B has it cached); revocation on A; then B's introspection polled back to back until
//! it answers `active: false`. The window runs from A's revocation answer to B's first inactive
//! answer; its resolution is one introspection round trip.
//!
//! With `--change disable-user` (invariant 11): per trial a user is created on A through the admin
//! API (demo-admin's token), logs in and gets a token for the client on B, which B's
//! introspection then has cached; the user is disabled on A; the window runs from A's answer to
//! B's first inactive answer.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use reqwest::header;
use serde::Serialize;
use tokio::time::Instant;

use crate::stats::Stats;
use crate::workload::Client;
use crate::{InvalidationArgs, InvalidationChange};

#[derive(Serialize)]
struct Report {
    change: InvalidationChange,
    node_a: String,
    node_b: String,
    trials: usize,
    /// Trials where B still accepted the token after `--give-up`.
    gave_up: usize,
    window_ms: Percentiles,
    /// The revocation request itself on A.
    revoke_ms: Percentiles,
}

#[derive(Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

async fn active_on(client: &Client, token: &str) -> anyhow::Result<bool> {
    let res = client
        .http()
        .post(client.url("/auth/introspect"))
        .header(header::AUTHORIZATION, client.basic().clone())
        .form(&[("token", token)])
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("introspection answered {}", res.status());
    }
    let v: serde_json::Value = res.json().await?;
    v.get("active")
        .and_then(serde_json::Value::as_bool)
        .context("introspection without `active`")
}

pub async fn run(args: InvalidationArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(10);
    let a = Client::new(&args.node_a, &args.client_id, &args.client_secret, timeout)?;
    let b = Client::new(&args.node_b, &args.client_id, &args.client_secret, timeout)?;
    let stats = Stats::new(&[crate::workload::TOKEN_CC])?;
    let mut window = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut revoke = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut gave_up = 0;
    let admin = match args.change {
        InvalidationChange::Revoke => None,
        InvalidationChange::DisableUser => {
            let admin = Client::new(
                &args.node_a,
                authplane_testkit::fixture::ADMIN,
                authplane_testkit::fixture::ADMIN_SECRET,
                timeout,
            )?;
            let token = admin
                .token_cc(&stats, Instant::now(), false)
                .await
                .context("demo-admin's token on A")?;
            Some((admin, token))
        }
    };
    let run_id = std::process::id();
    for trial in 0..args.trials {
        let username = format!("iw-{run_id}-{trial}");
        let (token, sub) = match &admin {
            None => {
                let token = a.token_cc(&stats, Instant::now(), true).await;
                (
                    token.with_context(|| format!("trial {trial}: client_credentials on A failed"))?,
                    String::new(),
                )
            }
            Some((admin, admin_token)) => {
                let res = admin
                    .http()
                    .post(admin.url("/admin/users"))
                    .bearer_auth(admin_token)
                    .json(&serde_json::json!({"username": username, "password": "window-password"}))
                    .send()
                    .await?;
                if res.status() != reqwest::StatusCode::CREATED {
                    bail!("trial {trial}: creating a user on A answered {}", res.status());
                }
                let sub = res.json::<serde_json::Value>().await?["sub"]
                    .as_str()
                    .context("no sub")?
                    .to_owned();
                let token = b.user_access_token(&stats, &username, "window-password").await;
                (
                    token.with_context(|| format!("trial {trial}: the new user's token on B failed"))?,
                    sub,
                )
            }
        };
        let warm_deadline = Instant::now() + Duration::from_secs(10);
        while !active_on(&b, &token).await? {
            if Instant::now() > warm_deadline {
                bail!("trial {trial}: B never saw A's token as active");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sent = Instant::now();
        let res = match &admin {
            None => {
                a.http()
                    .post(a.url("/auth/revoke"))
                    .header(header::AUTHORIZATION, a.basic().clone())
                    .form(&[("token", token.as_str())])
                    .send()
                    .await?
            }
            Some((admin, admin_token)) => {
                admin
                    .http()
                    .patch(admin.url(&format!("/admin/users/{sub}")))
                    .bearer_auth(admin_token)
                    .json(&serde_json::json!({"disabled": true}))
                    .send()
                    .await?
            }
        };
        if !res.status().is_success() {
            bail!("trial {trial}: the change on A answered {}", res.status());
        }
        let revoked = Instant::now();
        revoke.saturating_record(micros(revoked - sent));
        let give_up = revoked + args.give_up;
        loop {
            if !active_on(&b, &token).await? {
                window.saturating_record(micros(revoked.elapsed()));
                break;
            }
            if Instant::now() > give_up {
                gave_up += 1;
                window.saturating_record(micros(revoked.elapsed()));
                break;
            }
        }
    }
    if window.is_empty() {
        bail!("no trial ran (--trials 0?)");
    }
    let report = Report {
        change: args.change,
        node_a: args.node_a,
        node_b: args.node_b,
        trials: args.trials,
        gave_up,
        window_ms: Percentiles::of(&window),
        revoke_ms: Percentiles::of(&revoke),
    };
    crate::emit(&report, args.json_out.as_deref(), args.json, |report| {
        let (w, r) = (&report.window_ms, &report.revoke_ms);
        format!(
            "invalidation window ({:?}) over {} trials (A={} B={}): p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, max {:.3} ms; gave up {}\n\
             revocation on A: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
            report.change,
            report.trials,
            report.node_a,
            report.node_b,
            w.p50,
            w.p95,
            w.p99,
            w.max,
            report.gave_up,
            r.p50,
            r.p99,
            r.max
        )
    })?;
    Ok(if gave_up > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
