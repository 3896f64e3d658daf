//! `Application::build(cfg)` binds the listener, builds the state and the router; `run()` serves
//! until the root cancellation token fires, then drains. The caller binds (tests pass port 0 and
//! read `local_addr()`), so there is no port guessing anywhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{Config, StoreKind};
use crate::health::{HealthParts, HealthService};
use crate::http::{self, Admissions, HOT_ROUTES, HttpService};
use crate::jose::{FormKey, KeyEncryptionKey};
use crate::layers::admission::Admission;
use crate::server::{self, ConnLimits};
use crate::service::admin::{AdminParts, AdminService, Audit};
use crate::service::authorize::AuthorizeServiceParts;
use crate::service::dpop::DpopVerifier;
use crate::service::hasher::Hasher;
use crate::service::registration::{RegistrationParts, RegistrationService};
use crate::service::throttle::{Limits, Throttle};
use crate::service::tokens::TokenServiceParts;
use crate::service::{
    AuthorizeService, Caches, ClientRegistry, ClientRegistryParts, KeyPolicy, KeyService, LogoutService, NodeSink,
    RevocationQueue, SessionService, TokenService, Ttls, UserDirectory,
};
use crate::state::{AppState, Services, WebConfig};
use crate::store::instrumented::Instrumented;
use crate::store::memory::MemoryStore;
use crate::store::postgres::PostgresStore;
use crate::store::{InvalidationFeed, InvalidationSink, Store};
use crate::sweeper::Sweeper;
use crate::telemetry::{self, Metrics};

/// Grants whose purge may wait for the sweeper; beyond this the revoker purges inline.
const REVOCATION_QUEUE_CAPACITY: usize = 10_000;

/// What tests (and embedders) may swap: the store, the clock, and the listener (bound by the
/// caller, who then knows the address before the server is built: an OpenID Provider's issuer
/// names it).
#[derive(Default)]
pub struct Options {
    pub store: Option<Arc<dyn Store>>,
    pub clock: Clock,
    pub listener: Option<std::net::TcpListener>,
}

pub struct Application {
    /// The signing keys; their refresh runs in the background until shutdown.
    keys: KeyService,
    listener: TcpListener,
    /// `/metrics` and `/debug/health`, when `--management-listen` moves them off the public port.
    management: Option<(TcpListener, HttpService)>,
    /// Deadlines and caps of every client connection.
    limits: ConnLimits,
    store: Arc<dyn Store>,
    /// Other nodes' changes to this node's caches, when the store is shared (PostgreSQL).
    invalidations: Option<InvalidationFeed>,
    /// `true` while the invalidation feed is following other nodes' changes.
    listening: tokio::sync::watch::Receiver<bool>,
    /// Stops the background tasks (the sweeper, the key refresh, the metrics upkeep, the invalidation
    /// feed) once the server drained.
    background: CancellationToken,
    router: HttpService,
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
            (None, StoreKind::Memory) => {
                Arc::new(MemoryStore::bounded(cfg.memory_store_capacity, cfg.sweep_interval.0))
            }
            (None, StoreKind::Postgres) => {
                let url = cfg.database_url.as_deref().unwrap_or_default();
                Arc::new(PostgresStore::connect(url, cfg.pool_size, cfg.pool_timeout.0, &metrics).await?)
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
            id_token: cfg.id_token_ttl.0,
            pushed_request: cfg.par_ttl.0,
        };
        let (keys, forms) = start_keys(&cfg, &store, &opts.clock, &metrics).await?;
        let hasher = Hasher::new(cfg.hash_concurrency);
        let throttle = Arc::new(Throttle::new(
            Limits {
                window: cfg.failure_window.0,
                per_username: cfg.login_max_failures,
                per_address: cfg.address_max_failures,
                per_client: cfg.client_max_failures,
            },
            &metrics,
        ));
        let caches = Caches::new(cfg.cache_capacity, cfg.cache_ttl.0, &metrics);
        let users = Arc::new(UserDirectory::new(
            &cfg.users,
            Arc::clone(&store),
            cfg.cache_capacity,
            cfg.cache_ttl.0,
            &metrics,
        )?);
        let clients = ClientRegistry::new(
            ClientRegistryParts {
                configured: &cfg.clients,
                store: Arc::clone(&store),
                hasher: hasher.clone(),
                throttle: Arc::clone(&throttle),
                cache_capacity: cfg.cache_capacity,
                cache_ttl: cfg.cache_ttl.0,
                assertion_audiences: vec![
                    cfg.issuer.clone(),
                    endpoint_url(&cfg.issuer, "/auth/token")?.to_string(),
                ],
            },
            &metrics,
        );
        let revocations = Arc::new(RevocationQueue::new(REVOCATION_QUEUE_CAPACITY, &metrics));
        let sessions = SessionService::new(
            Arc::clone(&store),
            Arc::clone(&caches),
            Arc::clone(&users),
            hasher.clone(),
            ttls,
            throttle,
        );
        let dpop = DpopVerifier::new(cfg.dpop_max_age.0, cfg.dpop_replay_capacity);
        let authorize = AuthorizeService::new(AuthorizeServiceParts {
            store: Arc::clone(&store),
            keys: keys.clone(),
            forms,
            clients: clients.clone(),
            sessions: sessions.clone(),
            users: Arc::clone(&users),
            issuer: cfg.issuer.clone(),
            ttls,
            dpop: dpop.clone(),
            par_url: endpoint_url(&cfg.issuer, "/auth/par")?,
        });
        let tokens = TokenService::new(
            TokenServiceParts {
                store: Arc::clone(&store),
                caches: Arc::clone(&caches),
                users: Arc::clone(&users),
                clients: clients.clone(),
                ttls,
                revocations: Arc::clone(&revocations),
                keys: keys.clone(),
                issuer: cfg.issuer.clone(),
                access_token_alg: cfg.access_token_alg,
                dpop: dpop.clone(),
                token_url: endpoint_url(&cfg.issuer, "/auth/token")?,
                userinfo_url: endpoint_url(&cfg.issuer, "/auth/userinfo")?,
            },
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
        let admissions = Admissions::new(|route| {
            Admission::new(
                route,
                cfg.max_inflight,
                cfg.queue_capacity,
                cfg.request_timeout.0,
                &metrics,
            )
        });
        // Cross-node invalidation runs only where another node can change what we cached: the
        // store says whether that is so.
        let background = CancellationToken::new();
        let (listening_tx, listening) = tokio::sync::watch::channel(false);
        let invalidations = store.invalidations(
            Arc::new(NodeSink {
                caches: Arc::clone(&caches),
                keys: keys.clone(),
                users: Arc::clone(&users),
                clients: clients.clone(),
            }) as Arc<dyn InvalidationSink>,
            listening_tx,
            background.clone(),
        );
        let health = HealthService::new(
            HealthParts {
                store: Arc::clone(&store),
                caches: Arc::clone(&caches),
                clients: clients.clone(),
                users: Arc::clone(&users),
                sweeper: sweeper.status(),
                admissions: admissions.all().to_vec(),
                revocations,
                shutdown: cancel.clone(),
                pool_size: cfg.pool_size,
                invalidation: invalidations.as_ref().map(|_| listening.clone()),
                dpop,
            },
            &metrics,
        );
        let scopes = clients
            .configured()
            .fold(crate::domain::Scope::default(), |acc, c| acc.union(&c.scope));
        let web = Arc::new(WebConfig {
            issuer: cfg.issuer.clone(),
            issuer_origin: origin_of(&cfg.issuer),
            secure_cookie: cfg.issuer_is_https(),
            metadata: serde_json::to_vec(&http::metadata::document(&cfg.issuer, &scopes))?.into(),
            jwks_max_age: keys.policy().jwks_max_age().as_secs(),
        });
        let logout = LogoutService::new(
            sessions.clone(),
            tokens.clone(),
            keys.clone(),
            clients.clone(),
            cfg.issuer.clone(),
        );
        let audit = Audit::new(&metrics);
        let registration = RegistrationService::new(RegistrationParts {
            clients: clients.clone(),
            users: Arc::clone(&users),
            tokens: tokens.clone(),
            store: Arc::clone(&store),
            hasher: hasher.clone(),
            issuer: cfg.issuer.clone(),
            open: cfg.open_registration,
            audit: audit.clone(),
        });
        let admin = AdminService::new(AdminParts {
            tokens: tokens.clone(),
            keys: keys.clone(),
            users: Arc::clone(&users),
            clients: clients.clone(),
            store: Arc::clone(&store),
            hasher: hasher.clone(),
            registration: registration.clone(),
            audit,
        });
        let state = AppState::new(Services {
            sessions,
            authorize,
            tokens,
            clients,
            keys: keys.clone(),
            logout,
            admin,
            registration,
            health,
            metrics,
            clock: opts.clock,
            web,
        });
        let router = http::router(state.clone(), &admissions, cfg.management_listen.is_none());
        let listener = match opts.listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)?
            }
            None => TcpListener::bind(cfg.listen).await?,
        };
        let management = match cfg.management_listen {
            Some(addr) => Some((TcpListener::bind(addr).await?, http::management_router(state.clone()))),
            None => None,
        };
        let limits = ConnLimits {
            header_timeout: cfg.header_timeout.0,
            body_timeout: cfg.body_timeout.0,
            idle_timeout: cfg.idle_timeout.0,
            max_connections: cfg.max_connections,
            max_header_bytes: cfg.max_header_bytes.0,
        };
        Ok(Self {
            keys,
            listener,
            management,
            limits,
            store,
            invalidations,
            listening,
            background,
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

    /// The management address (`--management-listen`), when there is one.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The routes inside the edge, as the listener serves them, for tests that drive them
    /// without a socket (`oneshot`).
    pub fn router(&self) -> HttpService {
        self.router.clone()
    }

    /// Becomes `true` once the cross-node invalidation listener is connected.
    pub fn invalidation_listener(&self) -> tokio::sync::watch::Receiver<bool> {
        self.listening.clone()
    }

    pub fn sweeper(&self) -> &Sweeper {
        &self.sweeper
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Serves until the shutdown token fires, then shuts down in order: stop accepting and let
    /// in-flight requests finish; then stop the background tasks (the sweeper flushes pending
    /// revocations, which in-flight requests may have added); then release the store. All of it
    /// within the shutdown grace.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            management,
            limits,
            router,
            sweeper,
            cancel,
            tracker,
            grace,
            store,
            invalidations,
            background,
            keys,
            state,
            ..
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        let management = match management {
            Some((listener, router)) => {
                tracing::info!(addr = %listener.local_addr()?, "management listening");
                Some(tracker.spawn(server::serve(listener, router, limits, cancel.clone())))
            }
            None => None,
        };
        // Background tasks stop after the server has drained, not with it.
        tracker.spawn(sweeper.run(background.clone()));
        tracker.spawn(keys.run(background.clone()));
        tracker.spawn(
            state
                .metrics
                .clone()
                .upkeep(telemetry::METRICS_UPKEEP_EVERY, background.clone()),
        );
        if let Some(feed) = invalidations {
            tracker.spawn(feed);
        }
        let mut served = tracker.spawn(server::serve(listener, router, limits, cancel.clone()));
        tracker.close();
        let mut drained = tokio::select! {
            () = cancel.cancelled() => false,
            _ = &mut served => {
                // The server ended on its own (listener error): shut the rest down too.
                cancel.cancel();
                true
            }
        };
        tracing::info!(grace = ?grace, "shutting down: draining in-flight requests");
        let deadline = tokio::time::Instant::now() + grace;
        if !drained {
            drained = tokio::time::timeout_at(deadline, &mut served).await.is_ok();
        }
        if let Some(management) = management {
            drained &= tokio::time::timeout_at(deadline, management).await.is_ok();
        }
        if drained {
            tracing::info!("server stopped accepting and drained");
        } else {
            tracing::warn!("shutdown grace expired with requests still in flight");
        }
        background.cancel();
        if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
            tracing::warn!(
                remaining = tracker.len(),
                "shutdown grace expired with tasks still running"
            );
        } else {
            tracing::info!("shutdown complete");
        }
        store.close();
        Ok(())
    }
}

/// Every series that has no natural first observation, so dashboards never meet a missing one.
fn register_startup_series(metrics: &Metrics) {
    for route in &HOT_ROUTES {
        let _ = metrics.histogram(
            telemetry::HTTP_DURATION,
            &[
                ("method", route.methods[0].as_str()),
                ("route", route.path),
                ("status", "200"),
            ],
        );
    }
    let _ = metrics.histogram(telemetry::POOL_WAIT, &[]);
    let _ = metrics.histogram(telemetry::SWEEP_DURATION, &[]);
}

/// The deployment's signing keys. The memory store keeps its keys for the life of the process,
/// so without `--key-encryption-key` it seals them with a key drawn now; PostgreSQL requires one
/// (checked with the config), and a wrong one stops the start here, before anything is written.
/// Also the key that tags server-rendered forms (consent), derived from the same key-encryption
/// key so that every node of a deployment verifies the others' forms.
async fn start_keys(
    cfg: &Config,
    store: &Arc<dyn Store>,
    clock: &Clock,
    metrics: &Metrics,
) -> anyhow::Result<(KeyService, FormKey)> {
    let kek = match &cfg.key_encryption_key {
        Some(k) => KeyEncryptionKey::parse(k.expose())?,
        None => KeyEncryptionKey::generate()?,
    };
    let policy = KeyPolicy {
        rotation_interval: cfg.key_rotation_interval.0,
        publish_ahead: cfg.key_publish_ahead.0,
        // ID tokens now; JWT access tokens will be signed with these keys too.
        token_lifetime: cfg.id_token_ttl.0.max(cfg.access_token_ttl.0),
    };
    let forms = kek.form_key();
    let keys = KeyService::start(Arc::clone(store), kek, clock.clone(), policy, metrics).await?;
    Ok((keys, forms))
}

fn origin_of(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// `issuer` + `path`: an endpoint's public URL, as DPoP proofs name it.
fn endpoint_url(issuer: &str, path: &str) -> anyhow::Result<url::Url> {
    Ok(url::Url::parse(&format!("{}{path}", issuer.trim_end_matches('/')))?)
}
