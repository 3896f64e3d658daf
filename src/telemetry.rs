//! Telemetry: the tracing subscriber (text or JSON logs, optional OTLP export) and the metrics
//! registry. Metrics go to a Prometheus recorder owned by the application, not a process-global
//! one, so that every `Application` (and every test) has its own and `/metrics` renders exactly it.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use self::plain_fields::{PlainFields, RequestSpanFields};
pub use self::request_span::{RequestSpan, RequestSpans};
use crate::config::LogFormat;
pub use crate::layers::edge::REQUEST_SPAN;
/// The OTLP trace export, behind `--otlp-endpoint`; public for the test that runs a collector.
pub use crate::otlp::{OtlpGuard, layer as otlp_layer};

mod plain_fields;
mod request_span;

static METADATA: Metadata<'static> = Metadata::new("authplane", metrics::Level::INFO, Some(module_path!()));

/// Request latency buckets (seconds): fine below 10 ms where the hot paths live, coarse above,
/// with the 200 ms p99 budget as an edge so alerts on it are exact.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often the histograms' recent samples are folded into their buckets (the exporter's own
/// default, `PrometheusBuilder::upkeep_timeout`): until then it keeps each one, 16 bytes.
pub const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Sweeper runs take longer: up to minutes for a large backlog.
const SWEEP_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0];

pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
pub const CACHE_HITS: &str = "authplane_cache_hits_total";
pub const CACHE_MISSES: &str = "authplane_cache_misses_total";
pub const CACHE_EVICTIONS: &str = "authplane_cache_evictions_total";
pub const CACHE_ENTRIES: &str = "authplane_cache_entries";
pub const SWEEP_DURATION: &str = "authplane_sweeper_run_duration_seconds";
pub const SWEEP_REMOVED: &str = "authplane_sweeper_removed_total";
pub const SWEEP_LAST_RUN: &str = "authplane_sweeper_last_run_timestamp_seconds";
pub const QUEUE_DEPTH: &str = "authplane_queue_depth";
pub const REQUESTS_SHED: &str = "authplane_requests_shed_total";
/// Beyond the contract's list: the delay controller's state per hot endpoint.
pub const CONCURRENCY_LIMIT: &str = "authplane_concurrency_limit";
pub const POOL_CONNECTIONS: &str = "authplane_store_pool_connections";
pub const POOL_MAX: &str = "authplane_store_pool_max_connections";
pub const POOL_WAIT: &str = "authplane_store_pool_wait_seconds";
pub const STORE_OP_DURATION: &str = "authplane_store_operation_duration_seconds";
pub const TOKENS_ISSUED: &str = "authplane_tokens_issued_total";
pub const REVOCATIONS_PENDING: &str = "authplane_revocations_pending";
pub const THROTTLED: &str = "authplane_throttled_total";
pub const AUTH_FAILURES: &str = "authplane_auth_failures_total";
pub const STORE_RECORDS: &str = "authplane_store_records";
pub const STORE_CAPACITY: &str = "authplane_store_capacity_records";
pub const STORE_REFUSALS: &str = "authplane_store_capacity_refusals_total";
pub const SIGNING_DURATION: &str = "authplane_signing_duration_seconds";
pub const SIGNING_KEYS: &str = "authplane_signing_keys";
pub const ADMIN_ACTIONS: &str = "authplane_admin_actions_total";

/// The application's metrics registry: a cheap-clone handle over its own Prometheus recorder.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// Upkeep runs so far, scrapes included.
    upkeeps: Arc<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(SWEEP_DURATION.into()), SWEEP_BUCKETS));
        // The bucket lists are constants and non-empty, so the builder cannot refuse them; fall
        // back to the exporter's defaults all the same rather than panic.
        let recorder = builder.unwrap_or_else(|_| PrometheusBuilder::new()).build_recorder();
        let handle = recorder.handle();
        let m = Self {
            recorder: Arc::new(recorder),
            handle,
            upkeeps: Arc::new(AtomicU64::new(0)),
        };
        m.describe();
        m
    }

    fn describe(&self) {
        let r = &self.recorder;
        let d = |name: &'static str, unit: Option<Unit>, help: &'static str, kind: u8| {
            let (k, h) = (KeyName::from_const_str(name), SharedString::const_str(help));
            match kind {
                0 => r.describe_counter(k, unit, h),
                1 => r.describe_gauge(k, unit, h),
                _ => r.describe_histogram(k, unit, h),
            }
        };
        d(
            HTTP_DURATION,
            Some(Unit::Seconds),
            "HTTP request duration by method, matched route and status",
            2,
        );
        d(CACHE_HITS, None, "Cache lookups answered from the cache", 0);
        d(CACHE_MISSES, None, "Cache lookups that went to the store", 0);
        d(CACHE_EVICTIONS, None, "Entries removed from a cache, by cause", 0);
        d(CACHE_ENTRIES, None, "Entries currently in a cache", 1);
        d(SWEEP_DURATION, Some(Unit::Seconds), "Duration of one sweeper run", 2);
        d(
            SWEEP_REMOVED,
            None,
            "Expired records removed by the sweeper, by kind",
            0,
        );
        d(
            SWEEP_LAST_RUN,
            Some(Unit::Seconds),
            "Unix time the sweeper last finished a run",
            1,
        );
        d(QUEUE_DEPTH, None, "Requests waiting for a slot on a hot endpoint", 1);
        d(
            CONCURRENCY_LIMIT,
            None,
            "Requests a hot endpoint admits at once: --max-inflight, lower while its queue delay stands above target",
            1,
        );
        d(
            REQUESTS_SHED,
            None,
            "Requests refused with 503 because a hot endpoint was full",
            0,
        );
        d(POOL_CONNECTIONS, None, "Store connections by state", 1);
        d(POOL_MAX, None, "Largest number of store connections", 1);
        d(
            POOL_WAIT,
            Some(Unit::Seconds),
            "Time spent waiting for a store connection",
            2,
        );
        d(
            STORE_OP_DURATION,
            Some(Unit::Seconds),
            "Store operation duration by operation",
            2,
        );
        d(TOKENS_ISSUED, None, "Access tokens issued, by grant type", 0);
        d(
            REVOCATIONS_PENDING,
            None,
            "Revoked grants whose tokens are not purged yet",
            1,
        );
        d(
            THROTTLED,
            None,
            "Attempts refused with 429 after too many failures, by key kind",
            0,
        );
        d(AUTH_FAILURES, None, "Failed logins and client authentications", 0);
        d(
            STORE_RECORDS,
            None,
            "Records the memory store holds, by kind (0 on PostgreSQL)",
            1,
        );
        d(
            STORE_CAPACITY,
            None,
            "--memory-store-capacity: records the memory store may hold (0 on PostgreSQL)",
            1,
        );
        d(
            STORE_REFUSALS,
            None,
            "Issuance refused with 503 because the memory store held --memory-store-capacity records",
            0,
        );
        d(
            SIGNING_DURATION,
            Some(Unit::Seconds),
            "Time to sign one token, by algorithm",
            2,
        );
        d(ADMIN_ACTIONS, None, "Administration API actions done, by action", 0);
        d(
            SIGNING_KEYS,
            None,
            "Signing keys by algorithm and state (next: published, not signing yet; active; retired: published until its tokens expire)",
            1,
        );
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect();
        Key::from_parts(name, labels)
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder.register_counter(&Self::key(name, labels), &METADATA)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&Self::key(name, labels), &METADATA)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder.register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.run_upkeep();
        self.handle.render()
    }

    /// Folds the histograms' recent samples into their buckets and frees them. The exporter
    /// keeps every recorded sample until then, so a server that nobody scraped grew by every
    /// request it answered (about 10 MB for 470,000 userinfo requests).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
        self.upkeeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Upkeep runs so far, scrapes included.
    pub fn upkeeps(&self) -> u64 {
        self.upkeeps.load(Ordering::Relaxed)
    }

    /// Runs [`Metrics::run_upkeep`] every `every` until `cancel` fires: what the exporter's
    /// `install` does on a thread of its own, here a task of the application's (its recorder is
    /// its own, not the process's global one).
    pub async fn upkeep(self, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => self.run_upkeep(),
            }
        }
    }
}

/// Installs the process's tracing subscriber. Called once by `main`, before the runtime starts;
/// tests opt in with `TEST_LOG`. The returned guard flushes the OTLP exporter when dropped.
///
/// With an OTLP endpoint, `RUST_LOG` filters the log alone (a per-layer filter): the exporter gets
/// the request spans whatever the log's level. Without one, the log is the only layer and the
/// filter is the subscriber's own: decided once per callsite, where a per-layer filter keeps
/// its bookkeeping on every span's creation, entry, exit and close; and by target, the request
/// spans are made on demand ([`log_dispatch`]).
pub fn init_tracing(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<crate::otlp::OtlpGuard> {
    let (otlp, guard) = crate::otlp::layer(otlp_endpoint)?;
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = log_filter(&directives);
    if otlp.is_none() {
        log_dispatch(format, filter).try_init()?;
        return Ok(guard);
    }
    let fmt = match filter {
        LogFilter::Targets(t) => log_layer(format).with_filter(t).boxed(),
        LogFilter::Env(e) => log_layer(format).with_filter(e).boxed(),
    };
    tracing_subscriber::registry().with(otlp).with(fmt).try_init()?;
    Ok(guard)
}

/// The log alone. Filtered by target, it makes each request's span when something inside the
/// request is logged ([`RequestSpans`]); `EnvFilter`'s directives may name the request span
/// and decide by the spans entered, so there the span is made for every request.
fn log_dispatch(format: LogFormat, filter: LogFilter) -> tracing::Dispatch {
    let registry = tracing_subscriber::registry();
    match filter {
        LogFilter::Targets(t) => RequestSpans::new(registry.with(t).with(log_layer(format))).into(),
        LogFilter::Env(e) => registry.with(e).with(log_layer(format)).into(),
    }
}

/// The log in `format`, on stdout.
fn log_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
        // Colours only for a terminal: logs piped to a file or a collector stay plain text.
        LogFormat::Text => text_layer(std::io::stdout, std::io::stdout().is_terminal()).boxed(),
    }
}

/// The text log: fmt with [`PlainFields`], the request span's fields written by
/// [`RequestSpanFields`] (the layer runs first: fmt then finds them formatted).
pub fn text_layer<S, W>(writer: W, ansi: bool) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    RequestSpanFields.and_then(
        tracing_subscriber::fmt::layer()
            .fmt_fields(PlainFields)
            .with_ansi(ansi)
            .with_writer(writer),
    )
}

/// The log filter of `RUST_LOG` (default `info`). Made once, at start-up: its size is no matter.
#[allow(clippy::large_enum_variant)]
enum LogFilter {
    /// Levels by target, the directives operators write (`info`, `authplane=debug,tower=warn`):
    /// decided by an event's target and level alone, with no work per span.
    Targets(Targets),
    /// Directives that name spans or fields (`[request{method=POST}]=debug`) need `EnvFilter`,
    /// which tracks every span it enters and exits on each request.
    Env(EnvFilter),
}

fn log_filter(directives: &str) -> LogFilter {
    let directives = if directives.trim().is_empty() {
        "info"
    } else {
        directives
    };
    if !directives.contains(['[', '{']) {
        if let Ok(targets) = directives.parse::<Targets>() {
            return LogFilter::Targets(targets);
        }
    }
    LogFilter::Env(EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info")))
}

use tracing_subscriber::Layer as _;

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn rust_log_by_target_needs_no_env_filter() {
        let LogFilter::Targets(t) = log_filter("") else {
            panic!("the default is a Targets filter")
        };
        assert!(t.would_enable("authplane::http", &Level::INFO));
        assert!(!t.would_enable("authplane::http", &Level::DEBUG));
        let LogFilter::Targets(t) = log_filter("authplane=debug,tower_http=warn,info") else {
            panic!("levels by target are a Targets filter")
        };
        assert!(t.would_enable("authplane::service", &Level::DEBUG));
        assert!(!t.would_enable("tower_http::trace", &Level::INFO));
        assert!(t.would_enable("hyper", &Level::INFO));
        assert!(matches!(log_filter("[request{method=POST}]=debug"), LogFilter::Env(_)));
    }

    /// Levels by target: request spans made on demand. Directives naming spans decide by the
    /// spans entered: the request's is made at once.
    #[test]
    fn request_spans_are_made_on_demand_under_a_filter_by_target() {
        for (directives, lazy) in [("", true), ("authplane=debug,warn", true), ("[request]=debug", false)] {
            let dispatch = log_dispatch(LogFormat::Json, log_filter(directives));
            assert_eq!(dispatch.is::<RequestSpans>(), lazy, "{directives}");
        }
    }

    /// Without upkeep the exporter keeps every histogram sample: a server nobody scrapes would
    /// grow by every request. The task runs it on its interval and stops when cancelled.
    #[tokio::test(start_paused = true)]
    async fn upkeep_runs_on_its_interval_until_cancelled() {
        let metrics = Metrics::new();
        let h = metrics.histogram(HTTP_DURATION, &[("route", "/a")]);
        h.record(0.001);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(metrics.clone().upkeep(METRICS_UPKEEP_EVERY, cancel.clone()));
        tokio::time::sleep(METRICS_UPKEEP_EVERY / 2).await;
        assert_eq!(metrics.upkeeps(), 0, "the first run is one interval after the start");
        tokio::time::sleep(METRICS_UPKEEP_EVERY * 2).await;
        assert_eq!(metrics.upkeeps(), 2);
        cancel.cancel();
        task.await.expect("the upkeep task ends when cancelled");
        let after = metrics.upkeeps();
        tokio::time::sleep(METRICS_UPKEEP_EVERY * 3).await;
        assert_eq!(metrics.upkeeps(), after, "no run after cancellation");
        // Folding keeps what was recorded (the exporter's part), and a scrape counts as one more
        // upkeep.
        assert!(
            metrics
                .render()
                .contains(r#"http_server_request_duration_seconds_count{route="/a"} 1"#)
        );
        assert_eq!(metrics.upkeeps(), after + 1);
    }
}
