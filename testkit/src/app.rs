//! `TestApp`: a real server on 127.0.0.1:0 with the [fixture](crate::fixture), a manual clock,
//! and the helpers that speak the protocol to it. Test code: a failed step panics, as the test
//! would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authplane::config::{Settings, StoreKind};
use authplane::store::Store;
use authplane::store::memory::MemoryStore;
use authplane::{AppState, Application, Clock, Config, Options, Sweeper};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::fixture::{ALICE, ALICE_PASSWORD, APP, APP_REDIRECT, APP_SECRET};
use crate::oauth::{self, Pkce, VERIFIER};

/// `TEST_LOG=1` shows the server's logs.
fn init_test_log() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").try_init();
        }
    });
}

/// The fixture's config with `tweak` applied to the flags.
pub fn test_config(tweak: impl FnOnce(&mut Settings)) -> Config {
    crate::fixture::config(tweak).unwrap()
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

/// An app whose `--issuer` is its own address, as an OpenID Provider's must be for a relying
/// party's discovery to accept it: the listener is bound first, then the config is made.
pub async fn spawn_issuer(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let cfg = test_config(move |s| {
        s.issuer = Some(issuer);
        tweak(s);
    });
    spawn_on(cfg, None, Some(listener)).await
}

pub async fn spawn_with(cfg: Config, store: Option<Arc<dyn Store>>) -> TestApp {
    spawn_on(cfg, store, None).await
}

/// [`spawn_with`] on a listener the caller bound.
pub async fn spawn_on(cfg: Config, store: Option<Arc<dyn Store>>, listener: Option<std::net::TcpListener>) -> TestApp {
    init_test_log();
    // On the memory store the test keeps a handle; a postgres app builds its own store.
    let cfg_store = cfg.store;
    let store = match (store, cfg.store) {
        (Some(s), _) => Some(s),
        (None, StoreKind::Memory) => {
            Some(Arc::new(MemoryStore::bounded(cfg.memory_store_capacity, cfg.sweep_interval.0)) as Arc<dyn Store>)
        }
        (None, StoreKind::Postgres) => None,
    };
    let clock = Clock::manual();
    let app = Application::build_with(
        cfg,
        Options {
            store: store.clone(),
            clock: clock.clone(),
            listener,
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
    if cfg_store == StoreKind::Postgres {
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
    oauth::query_pairs(loc)
}

pub fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

pub async fn json(res: reqwest::Response) -> Value {
    res.json().await.unwrap()
}

/// The string at `key` of a JSON object.
pub fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")).to_owned()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in (JSON API) and returns the session cookie value.
    /// A JSON login post (as an API client sends it), whatever its answer.
    pub async fn login_response(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/login"))
            .header("accept", "application/json")
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// The login form posted by a browser (`Accept: text/html`), with the page's `return_to`.
    pub async fn browser_login(&self, username: &str, password: &str, return_to: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/login"))
            .header("accept", "text/html")
            .form(&[("username", username), ("password", password), ("return_to", return_to)])
            .send()
            .await
            .unwrap()
    }

    pub async fn login_as(&self, username: &str, password: &str) -> String {
        let res = self.login_response(username, password).await;
        assert_eq!(res.status(), StatusCode::OK);
        oauth::session_cookie(res.headers()).expect("a session cookie")
    }

    pub async fn login(&self) -> String {
        self.login_as(ALICE, ALICE_PASSWORD).await
    }

    /// GET /auth/authorize with the given query pairs and session cookie.
    pub async fn authorize(&self, session: Option<&str>, query: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.get(self.url("/auth/authorize")).query(query);
        if let Some(s) = session {
            req = req.header("cookie", oauth::session_header(s));
        }
        req.send().await.unwrap()
    }

    /// A code for `client` with a PKCE S256 challenge of [`VERIFIER`].
    pub async fn code(&self, session: &str, client: &str, redirect: &str, scope: &str) -> String {
        let pkce = Pkce::fixed();
        let res = self
            .authorize(
                Some(session),
                &[
                    ("response_type", "code"),
                    ("client_id", client),
                    ("redirect_uri", redirect),
                    ("scope", scope),
                    ("state", "st"),
                    ("code_challenge", &pkce.challenge),
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

    /// The `kid`s of `GET /auth/jwks`, sorted.
    pub async fn jwks_kids(&self) -> Vec<String> {
        let jwks = json(self.client.get(self.url("/auth/jwks")).send().await.unwrap()).await;
        let mut kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    }

    /// Exchanges a code for demo-app's tokens.
    pub async fn redeem_app(&self, code: &str) -> reqwest::Response {
        self.redeem((APP, APP_SECRET), APP_REDIRECT, code).await
    }

    /// Exchanges a code of a confidential client (made with [`Pkce::fixed`]) at `redirect`.
    pub async fn redeem(&self, client: (&str, &str), redirect: &str, code: &str) -> reqwest::Response {
        self.token(
            Some(client),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
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
