//! Health and readiness, and the `/debug/health` document: store, caches, sweeper, queues and
//! pending revocations. It reports counts and settings only, never personal data or credentials.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Gauge;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cache::CacheReport;
use crate::layers::admission::{Admission, AdmissionReport};
use crate::service::dpop::{DpopVerifier, ReplayReport};
use crate::service::{Caches, ClientRegistry, RevocationQueue, UserDirectory};
use crate::store::{PoolStatus, RecordCounts, RecordKind, Store, StoreKind};
use crate::sweeper::{SweeperReport, SweeperStatus};
use crate::telemetry::{self, Metrics};

#[derive(Clone)]
pub struct HealthService {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    store: Arc<dyn Store>,
    caches: Arc<Caches>,
    clients: ClientRegistry,
    users: Arc<UserDirectory>,
    sweeper: Arc<SweeperStatus>,
    admissions: Vec<Admission>,
    revocations: Arc<RevocationQueue>,
    shutdown: CancellationToken,
    pool_size: usize,
    invalidation: Option<tokio::sync::watch::Receiver<bool>>,
    dpop: DpopVerifier,
    gauges: Gauges,
}

struct Gauges {
    entries: Vec<(&'static str, Gauge)>,
    pool_idle: Gauge,
    pool_in_use: Gauge,
    pool_max: Gauge,
    /// `authplane_store_records{kind}`, in [`RecordKind::ALL`] order.
    records: Vec<Gauge>,
    capacity: Gauge,
}

#[derive(Serialize)]
pub struct HealthReport {
    pub status: &'static str,
    pub uptime_seconds: u64,
    pub store: StoreReport,
    pub caches: std::collections::BTreeMap<&'static str, CacheReport>,
    pub sweeper: SweeperReport,
    /// Each hot route's admission control, by route.
    pub queues: std::collections::BTreeMap<&'static str, AdmissionReport>,
    pub revocations_pending: usize,
    /// The DPoP proof replay cache of this node.
    pub dpop_replay: ReplayReport,
}

#[derive(Serialize)]
pub struct StoreReport {
    /// Serialised lowercase: `memory` or `postgres`.
    pub kind: StoreKind,
    pub ok: bool,
    pub pool: PoolStatus,
    /// `null` on the memory store; else whether the LISTEN connection is up.
    pub invalidation_listener_connected: Option<bool>,
    /// Records held against `--memory-store-capacity`; `null` on PostgreSQL.
    pub records: Option<RecordCounts>,
}

pub struct HealthParts {
    pub store: Arc<dyn Store>,
    pub caches: Arc<Caches>,
    pub clients: ClientRegistry,
    pub users: Arc<UserDirectory>,
    pub sweeper: Arc<SweeperStatus>,
    pub admissions: Vec<Admission>,
    pub revocations: Arc<RevocationQueue>,
    pub shutdown: CancellationToken,
    pub pool_size: usize,
    /// Whether the cross-node invalidation listener is connected (postgres only).
    pub invalidation: Option<tokio::sync::watch::Receiver<bool>>,
    pub dpop: DpopVerifier,
}

/// How long a readiness probe waits for the store before calling it down.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

impl HealthService {
    pub fn new(p: HealthParts, metrics: &Metrics) -> Self {
        let names = [
            "sessions",
            "access_tokens",
            "refresh_tokens",
            "grants",
            "client_secrets",
            "clients",
            "users",
        ];
        let gauges = Gauges {
            entries: names
                .iter()
                .map(|n| (*n, metrics.gauge(telemetry::CACHE_ENTRIES, &[("cache", n)])))
                .collect(),
            pool_idle: metrics.gauge(telemetry::POOL_CONNECTIONS, &[("state", "idle")]),
            pool_in_use: metrics.gauge(telemetry::POOL_CONNECTIONS, &[("state", "in_use")]),
            pool_max: metrics.gauge(telemetry::POOL_MAX, &[]),
            records: RecordKind::ALL
                .iter()
                .map(|k| metrics.gauge(telemetry::STORE_RECORDS, &[("kind", k.as_str())]))
                .collect(),
            capacity: metrics.gauge(telemetry::STORE_CAPACITY, &[]),
        };
        let svc = Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                store: p.store,
                caches: p.caches,
                clients: p.clients,
                users: p.users,
                sweeper: p.sweeper,
                admissions: p.admissions,
                revocations: p.revocations,
                shutdown: p.shutdown,
                pool_size: p.pool_size,
                invalidation: p.invalidation,
                dpop: p.dpop,
                gauges,
            }),
        };
        svc.refresh_gauges();
        svc
    }

    /// The store answers and we are not shutting down.
    pub async fn ready(&self) -> bool {
        !self.inner.shutdown.is_cancelled() && self.store_ok().await
    }

    async fn store_ok(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.inner.store.ping()).await,
            Ok(Ok(()))
        )
    }

    /// Sets the gauges that are read off live state (cache sizes, pool occupancy) just before a
    /// scrape renders them.
    pub fn refresh_gauges(&self) {
        let i = &self.inner;
        for (name, gauge) in &i.gauges.entries {
            gauge.set(self.cache_report(name).map_or(0.0, |r| r.entries as f64));
        }
        let pool = i.store.pool_status();
        i.gauges.pool_idle.set(pool.idle as f64);
        i.gauges.pool_in_use.set(pool.in_use as f64);
        let max = match i.store.kind() {
            StoreKind::Memory => 0,
            StoreKind::Postgres => i.pool_size,
        };
        i.gauges.pool_max.set(max as f64);
        let records = i.store.records();
        for (kind, gauge) in RecordKind::ALL.iter().zip(&i.gauges.records) {
            gauge.set(records.map_or(0.0, |r| r.of(*kind) as f64));
        }
        i.gauges.capacity.set(records.map_or(0.0, |r| r.capacity as f64));
    }

    fn cache_report(&self, name: &str) -> Option<CacheReport> {
        let c = &self.inner.caches;
        Some(match name {
            "sessions" => c.sessions.report(),
            "access_tokens" => c.access_tokens.report(),
            "refresh_tokens" => c.refresh_tokens.report(),
            "grants" => c.grants.report(),
            "client_secrets" => self.inner.clients.secret_cache_report(),
            "clients" => self.inner.clients.cache().report(),
            "users" => self.inner.users.cache().report(),
            _ => return None,
        })
    }

    pub async fn report(&self) -> HealthReport {
        let i = &self.inner;
        let ok = self.store_ok().await;
        let names = [
            "sessions",
            "access_tokens",
            "refresh_tokens",
            "grants",
            "client_secrets",
            "clients",
            "users",
        ];
        HealthReport {
            status: if i.shutdown.is_cancelled() {
                "shutting_down"
            } else if ok {
                "ok"
            } else {
                "degraded"
            },
            uptime_seconds: i.started.elapsed().as_secs(),
            store: StoreReport {
                kind: i.store.kind(),
                ok,
                pool: i.store.pool_status(),
                invalidation_listener_connected: i.invalidation.as_ref().map(|rx| *rx.borrow()),
                records: i.store.records(),
            },
            caches: names.iter().filter_map(|n| Some((*n, self.cache_report(n)?))).collect(),
            sweeper: i.sweeper.report(),
            queues: i.admissions.iter().map(|a| (a.route(), a.report())).collect(),
            revocations_pending: i.revocations.len(),
            dpop_replay: i.dpop.report(),
        }
    }
}
