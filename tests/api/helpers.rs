//! `spawn_app()`: a real server on 127.0.0.1:0 with test users and clients (cheap argon2
//! parameters, fixtures only), a manual clock, and helpers that speak the protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use authplane::clock::Clock;
use authplane::config::{ClientConfig, Config, FileConfig, Settings, TokenEndpointAuthMethod, UserConfig};
use authplane::crypto::{self, Argon2Params};
use authplane::domain::GrantType;
use authplane::state::AppState;
use authplane::store::Store;
use authplane::store::memory::MemoryStore;
use authplane::sweeper::Sweeper;
use authplane::{Application, Options};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const APP: &str = "demo-app";
pub const APP_SECRET: &str = "demo-secret";
pub const APP_REDIRECT: &str = "http://127.0.0.1:9000/callback";
pub const SPA: &str = "demo-spa";
pub const SPA_REDIRECT: &str = "http://127.0.0.1:9000/spa";
pub const OTHER: &str = "other-app";
pub const OTHER_SECRET: &str = "other-secret";
pub const OTHER_REDIRECT: &str = "http://127.0.0.1:9001/cb";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn cheap(secret: &str) -> String {
    crypto::hash_password(secret, Argon2Params::cheap()).unwrap()
}

fn init_test_log() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").try_init();
        }
    });
}

/// The test fixture: alice, the two demo clients and a second confidential client.
pub fn test_file() -> FileConfig {
    let users = vec![
        UserConfig {
            username: "alice".into(),
            password_hash: cheap("wonderland"),
            sub: "u-alice".into(),
            name: Some("Alice Liddell".into()),
            email: Some("alice@example.com".into()),
            email_verified: true,
        },
        UserConfig {
            username: "bob".into(),
            password_hash: cheap("builder"),
            sub: "u-bob".into(),
            name: Some("Bob".into()),
            email: None,
            email_verified: false,
        },
    ];
    let all = vec![
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];
    let scopes = vec!["openid".to_owned(), "profile".to_owned(), "email".to_owned()];
    let clients = vec![
        ClientConfig {
            client_id: APP.into(),
            secret_hash: Some(cheap(APP_SECRET)),
            redirect_uris: vec![APP_REDIRECT.into()],
            grant_types: all.clone(),
            scopes: scopes.clone(),
            token_endpoint_auth_method: Some(TokenEndpointAuthMethod::ClientSecretBasic),
            require_pkce: false,
            allowed_origins: None,
        },
        ClientConfig {
            client_id: SPA.into(),
            secret_hash: None,
            redirect_uris: vec![SPA_REDIRECT.into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: scopes.clone(),
            token_endpoint_auth_method: Some(TokenEndpointAuthMethod::None),
            require_pkce: false,
            allowed_origins: None,
        },
        ClientConfig {
            client_id: OTHER.into(),
            secret_hash: Some(cheap(OTHER_SECRET)),
            redirect_uris: vec![OTHER_REDIRECT.into(), "http://127.0.0.1:9001/other".into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::ClientCredentials],
            scopes: vec!["openid".into(), "profile".into()],
            token_endpoint_auth_method: None,
            require_pkce: false,
            allowed_origins: None,
        },
    ];
    FileConfig {
        settings: Settings::default(),
        users,
        clients,
    }
}

pub fn test_config(tweak: impl FnOnce(&mut Settings)) -> Config {
    let mut settings = Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Settings::default()
    };
    tweak(&mut settings);
    Config::resolve(settings, test_file()).unwrap()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Clock,
    pub state: AppState,
    pub sweeper: Sweeper,
    /// The store the test injected (`None` when the app built its own, as on PostgreSQL).
    pub store: Option<Arc<dyn Store>>,
    pub cancel: CancellationToken,
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// `true` while the cross-node invalidation listener is connected (postgres only).
    pub listening: tokio::sync::watch::Receiver<bool>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(test_config(|_| {}), None).await
}

pub async fn spawn_with(cfg: Config, store: Option<Arc<dyn Store>>) -> TestApp {
    init_test_log();
    // On the memory store the test keeps a handle; a postgres app builds its own store.
    let cfg_store = cfg.store;
    let store = match (store, cfg.store) {
        (Some(s), _) => Some(s),
        (None, authplane::config::StoreKind::Memory) => {
            Some(Arc::new(MemoryStore::bounded(cfg.memory_store_capacity, cfg.sweep_interval.0)) as Arc<dyn Store>)
        }
        (None, authplane::config::StoreKind::Postgres) => None,
    };
    let clock = Clock::manual();
    let app = Application::build_with(
        cfg,
        Options {
            store: store.clone(),
            clock: clock.clone(),
        },
    )
    .await
    .unwrap();
    let addr = app.local_addr().unwrap();
    let state = app.state().clone();
    let sweeper = app.sweeper().clone();
    let cancel = app.shutdown_token();
    let mut listening = app.invalidation_listener();
    let server = tokio::spawn(app.run());
    if cfg_store == authplane::config::StoreKind::Postgres {
        // The listener flushes every cache once LISTEN is in place; a test that warmed caches
        // before that would race with the flush.
        tokio::time::timeout(Duration::from_secs(10), listening.wait_for(|up| *up))
            .await
            .expect("invalidation listener connected")
            .unwrap();
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client,
        clock,
        state,
        sweeper,
        store,
        cancel,
        server,
        listening,
    }
}

/// The query parameters of a redirect's Location.
pub fn location_params(res: &reqwest::Response) -> Vec<(String, String)> {
    let loc = res
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap();
    let url = url::Url::parse(loc).unwrap_or_else(|_| url::Url::parse("http://x").unwrap().join(loc).unwrap());
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

pub async fn json(res: reqwest::Response) -> Value {
    res.json().await.unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in (JSON API) and returns the session cookie value.
    pub async fn login_as(&self, username: &str, password: &str) -> String {
        let res = self
            .client
            .post(self.url("/auth/login"))
            .header("accept", "application/json")
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        session_cookie(&res).expect("a session cookie")
    }

    pub async fn login(&self) -> String {
        self.login_as("alice", "wonderland").await
    }

    /// GET /auth/authorize with the given query pairs and session cookie.
    pub async fn authorize(&self, session: Option<&str>, query: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.get(self.url("/auth/authorize")).query(query);
        if let Some(s) = session {
            req = req.header("cookie", format!("authplane_session={s}"));
        }
        req.send().await.unwrap()
    }

    /// A code for `client` with a PKCE S256 challenge of [`VERIFIER`].
    pub async fn code(&self, session: &str, client: &str, redirect: &str, scope: &str) -> String {
        let challenge = crypto::pkce_challenge(VERIFIER);
        let res = self
            .authorize(
                Some(session),
                &[
                    ("response_type", "code"),
                    ("client_id", client),
                    ("redirect_uri", redirect),
                    ("scope", scope),
                    ("state", "st"),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::FOUND);
        param(&location_params(&res), "code").expect("a code")
    }

    /// POST /auth/token, authenticating as `basic` when given.
    pub async fn token(&self, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.post(self.url("/auth/token")).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    /// Exchanges a code for demo-app's tokens.
    pub async fn redeem_app(&self, code: &str) -> reqwest::Response {
        self.token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", APP_REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    /// Logs in as alice and runs the code flow for demo-app; returns the token response.
    pub async fn app_tokens(&self, scope: &str) -> Value {
        let session = self.login().await;
        let code = self.code(&session, APP, APP_REDIRECT, scope).await;
        let res = self.redeem_app(&code).await;
        assert_eq!(res.status(), StatusCode::OK);
        json(res).await
    }

    pub async fn refresh_app(&self, refresh: &str) -> reqwest::Response {
        self.token(
            Some((APP, APP_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await
    }

    pub async fn userinfo(&self, token: &str) -> reqwest::Response {
        self.client
            .get(self.url("/auth/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .client
            .post(self.url("/auth/introspect"))
            .basic_auth(APP, Some(APP_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        json(res).await
    }

    pub async fn revoke(&self, basic: (&str, &str), token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/revoke"))
            .basic_auth(basic.0, Some(basic.1))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus exposition.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The `/debug/health` document.
    pub async fn health(&self) -> Value {
        json(self.client.get(self.url("/debug/health")).send().await.unwrap()).await
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

pub fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let rest = v.strip_prefix("authplane_session=")?;
        let value = rest.split(';').next()?;
        (!value.is_empty()).then(|| value.to_owned())
    })
}

pub fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")).to_owned()
}
