//! `authplane-load`: drives real OAuth flows against a running authplane on this machine and
//! reports per-endpoint latency percentiles (hdrhistogram), answers by status and throughput.
//!
//! # Layout
//! - [`target`]: only loopback targets are accepted.
//! - [`stats`]: per-endpoint histograms, status counts, the table and JSON reports.
//! - [`driver`]: the open loop (fixed rate, latency from the intended send time) and the closed
//!   loop (fixed concurrency, saturation).
//! - [`workload`]: the protocol steps (login, authorize, token, userinfo, introspection, refresh)
//!   and the modes.
//! - [`baseline`]: `serve-baseline`, the bare handler behind the server's own stack.
//! - [`invalidation`]: the cross-node invalidation window on two nodes sharing PostgreSQL.
//! - [`memory`]: resident memory of the record cache and the memory store at N entries.
//! - [`cpu`]: CPU time of a process from `/proc`, to report the server's CPU per request.
//! - [`dpop`]: the DPoP proofs a client signs (`userinfo-dpop`).
//! - [`directory`]: users created through the admin API, their logins, Zipf logins' store reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod baseline;
mod cpu;
mod directory;
mod dpop;
mod driver;
mod invalidation;
mod memory;
mod seeded;
mod stats;
mod target;
mod transport;
mod workload;
mod zipf;

#[derive(Debug, Parser)]
#[command(
    name = "authplane-load",
    about = "Load generator and benchmark helpers for authplane"
)]
struct Cli {
    /// Runtime worker threads (default: the CPUs this process may run on, so `taskset -c 1`
    /// gives one).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the largest variant (every server setting) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Real flows: each virtual user logs in once, then authorize → token (code) → userinfo × k →
    /// refresh, over and over.
    Flow(RunArgs),
    /// GET /auth/userinfo with a pool of access tokens obtained first (`--zipf` picks the hot ones).
    Userinfo(RunArgs),
    /// GET /auth/userinfo with DPoP-bound access tokens (RFC 9449): the pool's tokens come from
    /// code exchanges that carried a proof of one `--dpop-alg` key, and every request sends
    /// `Authorization: DPoP` and a new proof (`ath`, `htm`, `htu` = the issuer's UserInfo URL
    /// from discovery). `--proofs N` signs N proofs before the run (each used once; give the
    /// server a `--dpop-max-age` longer than setup and run), else each is signed at send time.
    UserinfoDpop(RunArgs),
    /// POST /auth/introspect (RFC 7662) with a pool of access tokens obtained first, as for
    /// `userinfo` (`--zipf` picks the hot ones): `token=<access token>&token_type_hint=access_token`,
    /// authenticated with HTTP Basic as the client the tokens were issued to (`--client-id`,
    /// `--client-secret`). An answer counts only when it is a 200 saying `"active": true`.
    Introspect(RunArgs),
    /// POST /auth/token, grant_type=client_credentials (the client's secret verification is cached
    /// by the server after the first request).
    TokenCc(RunArgs),
    /// GET /auth/authorize with the virtual users' sessions (codes are not redeemed).
    Authorize(RunArgs),
    /// POST /auth/token, grant_type=refresh_token, each token rotated and its successor reused.
    Refresh(RunArgs),
    /// POST /auth/token, grant_type=authorization_code alone: `--tokens` codes are made first
    /// (authorize, not measured; give the server a `--code-ttl` longer than the run), then each
    /// request redeems one. The code grant, with its ID token when the scope holds openid.
    TokenCode(RunArgs),
    /// GET /baseline on `serve-baseline`: the stack's own ceiling.
    Baseline(RunArgs),
    /// Serves the baseline router (a constant small JSON behind the server's stack).
    ServeBaseline(ServeBaselineArgs),
    /// Serves a bare axum hello (the same JSON on /baseline, no layers, no subscriber): the HTTP
    /// stack's ceiling, for the ratios of issue 15.
    ServeHello(ServeHelloArgs),
    /// The real server (every `authplane serve` flag) on a memory store seeded with live and
    /// expired access tokens.
    ServeSeeded(ServeSeededArgs),
    /// Two nodes sharing PostgreSQL: time from a revocation on A until B stops accepting the token.
    InvalidationWindow(InvalidationArgs),
    /// Resident memory of a RecordCache (or the memory store) filled with N entries.
    CacheMemory(MemoryArgs),
    /// Users created through the admin API (argon2 included), each logged in once, then Zipf
    /// logins with the store reads each cost (issue 11).
    Users(UsersArgs),
}

/// Options shared by every load mode.
#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Open loop: requests per second, latency measured from each request's intended send time.
    /// For `flow`, the requests of every step together: flows start at rate / (3 + k); a flow's
    /// first request is timed from the flow's intended start, each later step from the end of
    /// the step before it (it cannot be sent earlier).
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop (saturation): this many requests (or flows) in flight at all times.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// Time run before the measurement starts, not recorded.
    #[arg(long, default_value = "2s", value_parser = humantime_duration)]
    warmup: Duration,
    /// Users as `name:password` (repeatable); virtual user i logs in as user i mod count.
    #[arg(long = "user", default_value = "alice:wonderland")]
    users: Vec<String>,
    /// Virtual users (login sessions).
    #[arg(long, default_value_t = 16)]
    vus: usize,
    /// Zipf exponent for which virtual users (flow, authorize) or tokens (userinfo, introspect)
    /// are hot; uniform when absent.
    #[arg(long)]
    zipf: Option<f64>,
    /// Access tokens (userinfo, introspect), refresh tokens (refresh) or codes (token-code)
    /// obtained before the run.
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    /// Userinfo calls per flow.
    #[arg(long, default_value_t = 3)]
    userinfo_per_flow: usize,
    #[arg(long, default_value = authplane_testkit::APP)]
    client_id: String,
    #[arg(long, default_value = authplane_testkit::APP_SECRET)]
    client_secret: String,
    #[arg(long, default_value = authplane_testkit::APP_REDIRECT)]
    redirect_uri: String,
    #[arg(long, default_value = "openid profile email")]
    scope: String,
    /// userinfo-dpop: the algorithm of the client's DPoP key.
    #[arg(long, value_enum, default_value = "ES256")]
    dpop_alg: authplane::jose::Alg,
    /// userinfo-dpop: proofs signed before the run, each used once (0: each signed when its
    /// request is sent, on this tool's CPU and inside the measured latency).
    #[arg(long, default_value_t = 0)]
    proofs: usize,
    /// Per-request timeout (a timeout counts as a transport error).
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    timeout: Duration,
    /// Open loop: most requests in flight; beyond it sends wait (and their latency, still counted
    /// from the intended send time, shows it).
    #[arg(long, default_value_t = 4096)]
    max_outstanding: usize,
    /// Report the CPU time this process (the server) used during the measurement.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Exit with status 1 when any request failed (transport error, or an unexpected answer).
    #[arg(long)]
    fail_on_errors: bool,
}

#[derive(Debug, Args)]
struct ServeBaselineArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 512)]
    max_inflight: usize,
    #[arg(long, default_value_t = 1024)]
    queue_capacity: usize,
}

#[derive(Debug, Args)]
struct ServeHelloArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Debug, Args)]
struct ServeSeededArgs {
    /// Unexpired access tokens in the store at start.
    #[arg(long, default_value_t = 1_000_000)]
    live: u64,
    /// Access tokens already expired at start (the sweeper's first run removes them).
    #[arg(long, default_value_t = 100_000)]
    expired: u64,
    #[command(flatten)]
    settings: authplane::config::Settings,
}

#[derive(Debug, Args)]
struct InvalidationArgs {
    /// What A changes: `revoke` a token, or `disable-user` (a user created on A through the
    /// admin API, its token cached on B, then disabled on A).
    #[arg(long, value_enum, default_value_t = InvalidationChange::Revoke)]
    change: InvalidationChange,
    #[arg(long)]
    node_a: String,
    #[arg(long)]
    node_b: String,
    #[arg(long, default_value_t = 100)]
    trials: usize,
    #[arg(long, default_value = authplane_testkit::APP)]
    client_id: String,
    #[arg(long, default_value = authplane_testkit::APP_SECRET)]
    client_secret: String,
    /// Give up on one trial after this long (the contract bounds the window by `--cache-ttl`).
    #[arg(long, default_value = "60s", value_parser = humantime_duration)]
    give_up: Duration,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum InvalidationChange {
    Revoke,
    DisableUser,
}

#[derive(Debug, Args)]
struct UsersArgs {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Users to create.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Requests in flight at once, in every phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// After creating them, log each user in once.
    #[arg(long)]
    login_each: bool,
    /// Then this many flows (login, authorize, token, userinfo) of Zipf-chosen users.
    #[arg(long, default_value_t = 0)]
    zipf_flows: usize,
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    #[arg(long, default_value = authplane_testkit::fixture::ADMIN)]
    admin_id: String,
    #[arg(long, default_value = authplane_testkit::fixture::ADMIN_SECRET)]
    admin_secret: String,
    #[arg(long, default_value = authplane_testkit::APP)]
    client_id: String,
    #[arg(long, default_value = authplane_testkit::APP_SECRET)]
    client_secret: String,
    #[arg(long, default_value = "60s", value_parser = humantime_duration)]
    timeout: Duration,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MemoryKind {
    /// Access-token records as the server caches them (client_id, sub, three scopes, grant id).
    Record,
    /// Negative entries (unknown tokens cached as absent).
    Negative,
    /// The memory store itself holding N access-token records (no cache).
    Store,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    #[arg(long, value_enum, default_value = "record")]
    kind: MemoryKind,
    #[arg(long)]
    json: bool,
}

/// Writes `report` as JSON to `json_out` when given, and prints it: as JSON with `--json`, else
/// as `table` renders it.
fn emit<R: serde::Serialize>(
    report: &R,
    json_out: Option<&std::path::Path>,
    json: bool,
    table: impl FnOnce(&R) -> String,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(report)?;
    if let Some(path) = json_out {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{text}");
    } else {
        print!("{}", table(report));
    }
    Ok(())
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 500ms, 10s or 2m"))
}

/// `250ms`, `10s`, `2m`, `1h` (one unit; enough for a command line).
fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The server's allocator (see authplane's main.rs): the hello and the baseline served from here
/// run on what the server runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authplane-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authplane-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    use workload::Mode;
    let (mode, args) = match command {
        Command::ServeBaseline(a) => return baseline::serve(a.listen, a.max_inflight, a.queue_capacity).await,
        Command::ServeHello(a) => return baseline::serve_hello(a.listen).await,
        Command::ServeSeeded(a) => return seeded::serve(a.live, a.expired, a.settings).await,
        Command::InvalidationWindow(a) => return invalidation::run(a).await,
        Command::CacheMemory(a) => return memory::run(a.entries, a.kind, a.json).await,
        Command::Users(a) => return directory::run(a).await,
        Command::Flow(a) => (Mode::Flow, a),
        Command::Userinfo(a) => (Mode::Userinfo, a),
        Command::UserinfoDpop(a) => (Mode::UserinfoDpop, a),
        Command::Introspect(a) => (Mode::Introspect, a),
        Command::TokenCc(a) => (Mode::TokenCc, a),
        Command::Authorize(a) => (Mode::Authorize, a),
        Command::Refresh(a) => (Mode::Refresh, a),
        Command::TokenCode(a) => (Mode::TokenCode, a),
        Command::Baseline(a) => (Mode::Baseline, a),
    };
    workload::run(mode, args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("xs"), None);
    }
}
