//! `Application::build(cfg)` binds the listener, builds the state and the router; `run()` serves
//! until the root cancellation token fires, then drains. The caller binds (tests pass port 0 and
//! read `local_addr()`), so there is no port guessing anywhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::health::{HealthParts, HealthService};
use crate::http::{self, HotRoutes};
use crate::layers::overload::Admission;
use crate::service::hasher::Hasher;
use crate::service::{
    AuthorizeService, Caches, ClientRegistry, RevocationQueue, SessionService, TokenService, Ttls, UserDirectory,
};
use crate::state::{AppState, WebConfig};
use crate::store::Store;
use crate::store::instrumented::Instrumented;
use crate::store::memory::MemoryStore;
use crate::sweeper::Sweeper;
use crate::telemetry::{self, Metrics};

/// Grants whose purge may wait for the sweeper; beyond this the revoker purges inline.
const REVOCATION_QUEUE_CAPACITY: usize = 10_000;

/// What tests (and embedders) may swap: the store and the clock.
#[derive(Default)]
pub struct Options {
    pub store: Option<Arc<dyn Store>>,
    pub clock: Clock,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    sweeper: Sweeper,
    cancel: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        Self::build_with(cfg, Options::default()).await
    }

    pub async fn build_with(cfg: Config, opts: Options) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let store: Arc<dyn Store> = match (opts.store, cfg.store) {
            (Some(s), _) => s,
            (None, StoreKind::Memory) => Arc::new(MemoryStore::new()),
            (None, StoreKind::Postgres) => {
                anyhow::bail!("the postgres store is not available in this build")
            }
        };
        let store: Arc<dyn Store> = Arc::new(Instrumented::new(store, &metrics));
        register_startup_series(&metrics);
        let cancel = CancellationToken::new();
        let ttls = Ttls {
            session: cfg.session_ttl.0,
            code: cfg.code_ttl.0,
            access_token: cfg.access_token_ttl.0,
            refresh_token: cfg.refresh_token_ttl.0,
        };
        let hasher = Hasher::new(cfg.hash_concurrency);
        let caches = Caches::new(cfg.cache_capacity, cfg.cache_ttl.0, &metrics);
        let users = Arc::new(UserDirectory::new(&cfg.users)?);
        let clients = ClientRegistry::new(
            &cfg.clients,
            hasher.clone(),
            cfg.cache_capacity,
            cfg.cache_ttl.0,
            &metrics,
        )?;
        let revocations = Arc::new(RevocationQueue::new(REVOCATION_QUEUE_CAPACITY, &metrics));
        let sessions = SessionService::new(
            Arc::clone(&store),
            Arc::clone(&caches),
            Arc::clone(&users),
            hasher.clone(),
            ttls,
        );
        let authorize = AuthorizeService::new(
            Arc::clone(&store),
            clients.clone(),
            sessions.clone(),
            Arc::clone(&users),
            cfg.issuer.clone(),
            ttls,
        );
        let tokens = TokenService::new(
            Arc::clone(&store),
            Arc::clone(&caches),
            Arc::clone(&users),
            ttls,
            Arc::clone(&revocations),
            &metrics,
        );
        let sweeper = Sweeper::new(
            Arc::clone(&store),
            tokens.clone(),
            opts.clock.clone(),
            cfg.sweep_interval.0,
            cfg.sweep_batch,
            &metrics,
        );
        let admission = |route| {
            Admission::new(
                route,
                cfg.max_inflight,
                cfg.queue_capacity,
                cfg.request_timeout.0,
                &metrics,
            )
        };
        let hot = HotRoutes {
            authorize: admission("/auth/authorize"),
            token: admission("/auth/token"),
            userinfo: admission("/auth/userinfo"),
        };
        let health = HealthService::new(
            HealthParts {
                store: Arc::clone(&store),
                caches: Arc::clone(&caches),
                clients: clients.clone(),
                sweeper: sweeper.status(),
                queues: hot.all(),
                revocations,
                shutdown: cancel.clone(),
                pool_size: cfg.pool_size,
            },
            &metrics,
        );
        let scopes = clients
            .all()
            .fold(crate::domain::Scope::default(), |acc, c| acc.union(&c.scope));
        let web = Arc::new(WebConfig {
            issuer: cfg.issuer.clone(),
            issuer_origin: origin_of(&cfg.issuer),
            secure_cookie: cfg.issuer_is_https(),
            metadata: serde_json::to_vec(&http::metadata::document(&cfg.issuer, &scopes))?.into(),
        });
        let state = AppState {
            sessions,
            authorize,
            tokens,
            clients,
            health,
            metrics,
            clock: opts.clock,
            web,
        };
        let router = http::router(state.clone(), &hot);
        let listener = TcpListener::bind(cfg.listen).await?;
        Ok(Self {
            listener,
            router,
            state,
            sweeper,
            cancel,
            tracker: TaskTracker::new(),
            grace: cfg.shutdown_grace.0,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router, for tests that drive it without a socket (`oneshot`).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn sweeper(&self) -> &Sweeper {
        &self.sweeper
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Serves until the shutdown token fires, then stops accepting, lets in-flight requests finish
    /// and the sweeper flush, waiting at most the shutdown grace.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            sweeper,
            cancel,
            tracker,
            grace,
            ..
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        tracker.spawn(sweeper.run(cancel.child_token()));
        let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        let served = tracker.spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "server failed");
            }
            tracing::info!("server stopped accepting and drained");
        });
        tracker.close();
        tokio::select! {
            () = cancel.cancelled() => {}
            _ = served => {
                // The server ended on its own (listener error): shut the rest down too.
                cancel.cancel();
            }
        }
        tracing::info!(grace = ?grace, "shutting down");
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                remaining = tracker.len(),
                "shutdown grace expired with tasks still running"
            );
        } else {
            tracing::info!("shutdown complete");
        }
        Ok(())
    }
}

/// Every series that has no natural first observation, so dashboards never meet a missing one.
fn register_startup_series(metrics: &Metrics) {
    for route in ["/auth/authorize", "/auth/token", "/auth/userinfo"] {
        let _ = metrics.histogram(
            telemetry::HTTP_DURATION,
            &[("method", "GET"), ("route", route), ("status", "200")],
        );
    }
    let _ = metrics.histogram(telemetry::POOL_WAIT, &[]);
    let _ = metrics.histogram(telemetry::SWEEP_DURATION, &[]);
}

fn origin_of(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}
