//! `users`: the user directory under load (issue 11). Three phases against one server:
//! 1. `--users` users created through `POST /admin/users` (argon2 included), `--concurrency` at
//!    a time: the rate, bounded by the server's `--hash-concurrency` argon2 runs at once;
//! 2. each of them logging in once (`POST /auth/login`, an argon2 verification each);
//! 3. with `--zipf-flows`, that many flows of Zipf-chosen users (login, authorize, token,
//!    userinfo), with the store operations the server counted during the phase (from its
//!    `/metrics`): store reads per login when the caches are far smaller than the directory.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::UsersArgs;
use crate::stats::Stats;
use crate::workload::{Client, LOGIN};
use crate::zipf::Zipf;

const PASSWORD: &str = "directory-password";

#[derive(Serialize)]
struct Report {
    users: usize,
    concurrency: usize,
    create: Phase,
    login_each: Option<Phase>,
    zipf: Option<ZipfPhase>,
}

/// One phase: how many requests succeeded, in how long, and their latency.
#[derive(Serialize)]
struct Phase {
    ok: usize,
    failed: usize,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Serialize)]
struct ZipfPhase {
    flows: usize,
    exponent: f64,
    distinct_users: usize,
    flows_ok: usize,
    seconds: f64,
    flows_per_second: f64,
    /// Store operations during the phase, by operation, per flow (one login each).
    store_ops_per_login: BTreeMap<String, f64>,
    /// Every store read (`get_*`) per login.
    store_reads_per_login: f64,
    /// The `users` cache's hit rate during the phase.
    users_cache_hit_rate: Option<f64>,
}

/// Runs `n` jobs `concurrency` at a time; job `i` answers `true` when it succeeded.
async fn phase<F, Fut>(n: usize, concurrency: usize, job: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (job, next) = (Arc::clone(&job), Arc::clone(&next));
        workers.spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let (mut ok, mut failed) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>((latency, ok, failed));
                }
                let sent = Instant::now();
                if job(i).await {
                    ok += 1;
                    latency.saturating_record(sent.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
                } else {
                    failed += 1;
                }
            }
        });
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = workers.join_next().await {
        let (h, o, f) = done??;
        latency.add(h)?;
        ok += o;
        failed += f;
    }
    let seconds = start.elapsed().as_secs_f64();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Phase {
        ok,
        failed,
        seconds,
        per_second: ok as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    })
}

/// The samples of `metric` on the server's `/metrics`, by the value of `label`.
async fn scrape(client: &Client, metric: &str, label: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = client.http().get(client.url("/metrics")).send().await?.text().await?;
    let mut out = BTreeMap::new();
    let key = format!("{label}=\"");
    for line in text.lines().filter(|l| l.starts_with(metric)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if !series[metric.len()..].starts_with('{') {
            continue;
        }
        let Some(v) = series.split_once(&key).and_then(|(_, rest)| rest.split('"').next()) else {
            continue;
        };
        *out.entry(v.to_owned()).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

async fn admin_token(args: &UsersArgs) -> anyhow::Result<String> {
    let admin = Client::new(&args.url, &args.admin_id, &args.admin_secret, args.timeout)?;
    let stats = Stats::new(&[crate::workload::TOKEN_CC])?;
    admin
        .token_cc(&stats, Instant::now(), false)
        .await
        .context("no admin token (client_credentials with scope admin)")
}

pub async fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let client = Arc::new(Client::new(
        &args.url,
        &args.client_id,
        &args.client_secret,
        args.timeout,
    )?);
    let stats = Arc::new(Stats::new(&[
        LOGIN,
        crate::workload::AUTHORIZE,
        crate::workload::TOKEN_CODE,
    ])?);
    let prefix = format!("dir-{}", std::process::id());
    let username = {
        let prefix = prefix.clone();
        move |i: usize| format!("{prefix}-{i}")
    };

    let token = Arc::new(admin_token(&args).await?);
    let create = {
        let (client, token, username) = (Arc::clone(&client), Arc::clone(&token), username.clone());
        phase(args.users, args.concurrency, move |i| {
            let (client, token, name) = (Arc::clone(&client), Arc::clone(&token), username(i));
            async move {
                let res = client
                    .http()
                    .post(client.url("/admin/users"))
                    .bearer_auth(&*token)
                    .json(&serde_json::json!({"username": name, "password": PASSWORD}))
                    .send()
                    .await;
                matches!(res, Ok(r) if r.status() == reqwest::StatusCode::CREATED)
            }
        })
        .await?
    };
    eprintln!("created {} users at {:.0}/s", create.ok, create.per_second);
    if create.ok != args.users {
        bail!("{} of {} users could not be created", create.failed, args.users);
    }

    let login_each = if args.login_each {
        let (client, stats, username) = (Arc::clone(&client), Arc::clone(&stats), username.clone());
        let p = phase(args.users, args.concurrency, move |i| {
            let (client, stats, name) = (Arc::clone(&client), Arc::clone(&stats), username(i));
            async move { client.login(&stats, &name, PASSWORD).await.is_some() }
        })
        .await?;
        eprintln!("logged each in at {:.0}/s", p.per_second);
        Some(p)
    } else {
        None
    };

    let zipf = match args.zipf_flows {
        0 => None,
        flows => {
            let picker = Arc::new(Zipf::new(args.users, args.zipf));
            let picks: Vec<usize> = {
                let mut rng = rand::thread_rng();
                (0..flows).map(|_| picker.sample(&mut rng)).collect()
            };
            let distinct_users = picks.iter().collect::<std::collections::BTreeSet<_>>().len();
            let picks = Arc::new(picks);
            let ops = "authplane_store_operation_duration_seconds_count";
            let (ops_before, hits_before, misses_before) = (
                scrape(&client, ops, "op").await?,
                scrape(&client, "authplane_cache_hits_total", "cache").await?,
                scrape(&client, "authplane_cache_misses_total", "cache").await?,
            );
            let p = {
                let (client, stats, username) = (Arc::clone(&client), Arc::clone(&stats), username.clone());
                phase(flows, args.concurrency, move |i| {
                    let (client, stats) = (Arc::clone(&client), Arc::clone(&stats));
                    let name = username(picks[i]);
                    async move {
                        match client.user_access_token(&stats, &name, PASSWORD).await {
                            Some(access) => client.userinfo(&stats, &access, Instant::now(), true).await,
                            None => false,
                        }
                    }
                })
                .await?
            };
            let ops_after = scrape(&client, ops, "op").await?;
            let per_login: BTreeMap<String, f64> = ops_after
                .iter()
                .map(|(op, n)| (op.clone(), (n - ops_before.get(op).unwrap_or(&0.0)) / flows as f64))
                .filter(|(_, n)| *n > 0.0)
                .collect();
            let reads = per_login
                .iter()
                .filter(|(op, _)| op.starts_with("get_"))
                .map(|(_, n)| n)
                .sum();
            let hits = scrape(&client, "authplane_cache_hits_total", "cache").await?;
            let misses = scrape(&client, "authplane_cache_misses_total", "cache").await?;
            let delta = |after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>| {
                after.get("users").unwrap_or(&0.0) - before.get("users").unwrap_or(&0.0)
            };
            let (h, m) = (delta(&hits, &hits_before), delta(&misses, &misses_before));
            Some(ZipfPhase {
                flows,
                exponent: args.zipf,
                distinct_users,
                flows_ok: p.ok,
                seconds: p.seconds,
                flows_per_second: p.per_second,
                store_ops_per_login: per_login,
                store_reads_per_login: reads,
                users_cache_hit_rate: (h + m > 0.0).then(|| h / (h + m)),
            })
        }
    };

    let report = Report {
        users: args.users,
        concurrency: args.concurrency,
        create,
        login_each,
        zipf,
    };
    crate::emit(&report, args.json_out.as_deref(), args.json, |r| {
        serde_json::to_string_pretty(r).unwrap_or_default() + "\n"
    })?;
    Ok(ExitCode::SUCCESS)
}
