//! What a run measured: per endpoint, a latency histogram of the successful answers and one of
//! the failed answers (a 503 from load shedding is a failed answer, and its own latency matters),
//! counts by status and by transport error, and the table and JSON reports.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const HIGHEST_US: u64 = 600_000_000;

/// How one request ended.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// The expected answer.
    Ok(u16),
    /// An HTTP answer, but not the expected one (status, or a body or header missing what the
    /// next step needs).
    Unexpected(u16),
    /// No HTTP answer.
    Transport(TransportError),
    /// Not sent: the load tool ran out of something it needs (every refresh token was in flight).
    /// Counted as an error, since the run did not apply the load it was asked to.
    NotSent(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub enum TransportError {
    Timeout,
    Connect,
    Other,
}

impl TransportError {
    fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "transport:timeout",
            Self::Connect => "transport:connect",
            Self::Other => "transport:other",
        }
    }
}

struct Endpoint {
    ok: Histogram<u64>,
    failed: Histogram<u64>,
    by_status: BTreeMap<String, u64>,
    errors: u64,
}

impl Endpoint {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ok: Histogram::new_with_bounds(1, HIGHEST_US, 3)?,
            failed: Histogram::new_with_bounds(1, HIGHEST_US, 3)?,
            by_status: BTreeMap::new(),
            errors: 0,
        })
    }
}

/// Shared by every request task; one short lock per recorded request.
pub struct Stats {
    endpoints: Mutex<BTreeMap<&'static str, Endpoint>>,
}

impl Stats {
    /// The endpoints are created up front, so recording never allocates a histogram.
    pub fn new(endpoints: &[&'static str]) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        for e in endpoints {
            map.insert(*e, Endpoint::new()?);
        }
        Ok(Self {
            endpoints: Mutex::new(map),
        })
    }

    pub fn record(&self, endpoint: &'static str, outcome: Outcome, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = map.get_mut(endpoint) else {
            return;
        };
        let key: std::borrow::Cow<'static, str> = match outcome {
            Outcome::Ok(s) => {
                e.ok.saturating_record(us);
                status_str(s)
            }
            Outcome::Unexpected(s) => {
                e.failed.saturating_record(us);
                e.errors += 1;
                format!("unexpected:{s}").into()
            }
            Outcome::Transport(t) => {
                e.errors += 1;
                t.as_str().into()
            }
            Outcome::NotSent(why) => {
                e.errors += 1;
                format!("not_sent:{why}").into()
            }
        };
        match e.by_status.get_mut(key.as_ref()) {
            Some(n) => *n += 1,
            None => {
                e.by_status.insert(key.into_owned(), 1);
            }
        }
    }

    /// Errors of every endpoint together.
    pub fn errors(&self) -> u64 {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|e| e.errors).sum()
    }

    pub fn report(&self, measured: Duration) -> BTreeMap<&'static str, EndpointReport> {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let secs = measured.as_secs_f64().max(1e-9);
        map.iter()
            .filter(|(_, e)| !e.by_status.is_empty())
            .map(|(name, e)| {
                let ok = e.ok.len();
                (
                    *name,
                    EndpointReport {
                        requests: ok + e.errors,
                        ok,
                        errors: e.errors,
                        ok_per_sec: ok as f64 / secs,
                        latency_ms: Percentiles::of(&e.ok),
                        failed_latency_ms: Percentiles::of(&e.failed),
                        by_status: e.by_status.clone(),
                    },
                )
            })
            .collect()
    }
}

fn status_str(s: u16) -> std::borrow::Cow<'static, str> {
    match s {
        200 => "200".into(),
        302 => "302".into(),
        503 => "503".into(),
        _ => s.to_string().into(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
    /// The percentile spectrum, `[percentile, ms]` from the median to the maximum, for the
    /// HdrHistogram-style plots of `scripts/plot-percentiles`.
    pub spectrum: Vec<(f64, f64)>,
}

/// The percentiles of [`Percentiles::spectrum`] (100 is the maximum).
const SPECTRUM: [f64; 12] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
            spectrum: SPECTRUM
                .iter()
                .map(|&p| (p, ms(h.value_at_quantile(p / 100.0))))
                .collect(),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointReport {
    /// Requests sent in the measured window that got an answer or a transport error.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Expected answers per second of measured time: the achieved throughput.
    pub ok_per_sec: f64,
    /// Latency of the expected answers, ms.
    pub latency_ms: Option<Percentiles>,
    /// Latency of the unexpected answers (such as 503 when shedding), ms.
    pub failed_latency_ms: Option<Percentiles>,
    pub by_status: BTreeMap<String, u64>,
}

/// The whole run, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub mode: &'static str,
    pub target: String,
    /// `open` (fixed rate) or `closed` (fixed concurrency).
    pub r#loop: &'static str,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub zipf: Option<f64>,
    pub endpoints: BTreeMap<&'static str, EndpointReport>,
    /// Expected answers per second, every endpoint together.
    pub total_ok_per_sec: f64,
    pub errors: u64,
    /// Open loop: how late the scheduler sent requests (a late send counts in the latency anyway).
    pub send_lag_ms: Option<Percentiles>,
    /// CPU of the server process during the measurement (with `--server-pid`).
    pub server_cpu: Option<CpuReport>,
    /// CPU of this process during the measurement.
    pub client_cpu: Option<CpuReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CpuReport {
    /// CPU seconds per wall second (1.0 = one core fully busy).
    pub cores_busy: f64,
    /// CPU microseconds per expected answer.
    pub cpu_us_per_ok: f64,
}

impl RunReport {
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let shape = match (self.rate, self.concurrency) {
            (Some(r), _) => format!("open loop {r} req/s"),
            (None, Some(c)) => format!("closed loop, concurrency {c}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "mode={} target={} {} duration={}s warmup={}s zipf={}",
            self.mode,
            self.target,
            shape,
            self.duration_s,
            self.warmup_s,
            self.zipf.map_or("none".to_owned(), |z| z.to_string())
        );
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}   (ms)",
            "endpoint", "requests", "ok", "errors", "ok/s", "p50", "p95", "p99", "p99.9", "max"
        );
        for (name, e) in &self.endpoints {
            let p =
                |f: fn(&Percentiles) -> f64| e.latency_ms.as_ref().map_or("-".to_owned(), |l| format!("{:.3}", f(l)));
            let _ = writeln!(
                out,
                "{:<16} {:>9} {:>9} {:>7} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8}",
                name,
                e.requests,
                e.ok,
                e.errors,
                e.ok_per_sec,
                p(|l| l.p50),
                p(|l| l.p95),
                p(|l| l.p99),
                p(|l| l.p99_9),
                p(|l| l.max)
            );
            if let Some(f) = &e.failed_latency_ms {
                let _ = writeln!(
                    out,
                    "{:<16} {:>9} {:>9} {:>7} {:>10} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                    "  (failed)", "", "", "", "", f.p50, f.p95, f.p99, f.p99_9, f.max
                );
            }
            let statuses: Vec<String> = e.by_status.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "  answers: {}", statuses.join(" "));
        }
        let _ = writeln!(
            out,
            "total ok/s: {:.1}   errors: {}",
            self.total_ok_per_sec, self.errors
        );
        if let Some(l) = &self.send_lag_ms {
            let _ = writeln!(out, "send lag (ms): p50 {:.3} p99 {:.3} max {:.3}", l.p50, l.p99, l.max);
        }
        for (who, c) in [("server", &self.server_cpu), ("load tool", &self.client_cpu)] {
            if let Some(c) = c {
                let _ = writeln!(
                    out,
                    "{who} cpu: {:.2} cores busy, {:.1} cpu-µs per ok answer",
                    c.cores_busy, c.cpu_us_per_ok
                );
            }
        }
        out
    }
}

/// Send lag of the open-loop scheduler, in its own histogram.
pub struct Lag(Mutex<Histogram<u64>>);

impl Lag {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(Mutex::new(Histogram::new_with_bounds(1, HIGHEST_US, 3)?)))
    }

    pub fn record(&self, lag: Duration) {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(us);
    }

    pub fn report(&self) -> Option<Percentiles> {
        Percentiles::of(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_outcome() {
        let s = Stats::new(&["a", "b"]).unwrap();
        for _ in 0..99 {
            s.record("a", Outcome::Ok(200), Duration::from_micros(500));
        }
        s.record("a", Outcome::Unexpected(503), Duration::from_millis(2));
        s.record(
            "a",
            Outcome::Transport(TransportError::Timeout),
            Duration::from_secs(10),
        );
        let r = s.report(Duration::from_secs(1));
        let a = &r["a"];
        assert_eq!((a.requests, a.ok, a.errors), (101, 99, 2));
        assert_eq!(a.by_status["200"], 99);
        assert_eq!(a.by_status["unexpected:503"], 1);
        assert_eq!(a.by_status["transport:timeout"], 1);
        let l = a.latency_ms.as_ref().unwrap();
        assert!((l.p99 - 0.5).abs() < 0.01);
        assert!(!r.contains_key("b"), "endpoints without requests are left out");
        assert_eq!(s.errors(), 2);
    }
}
