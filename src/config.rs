//! Configuration: one `Settings` struct that is at once the clap flags (with their
//! `AUTHPLANE_*` environment variables) and the `[settings]` table of the TOML file. Precedence is
//! flag > environment > file > default: clap resolves the first two, [`Settings::overlay`] the
//! file, [`Config::resolve`] the defaults. Durations are parsed once, here.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::crypto::PasswordHashString;
use crate::domain::{GrantType, Scope};
pub use crate::store::StoreKind;

#[derive(Debug, Parser)]
#[command(name = "authplane", version, about = "A fast OAuth 2.0 authorization server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Settings),
    /// Read a password on stdin and print its argon2id PHC string (for the config file).
    HashPassword,
    /// Load the configuration as `serve` would, print the effective settings as JSON and exit.
    CheckConfig(Settings),
}

/// A humantime duration (`250ms`, `2s`, `15m`, `30d`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Self)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting, each optional so that the layers can be overlaid. Field names are the TOML keys;
/// clap derives `--kebab-case` flags and we name the `AUTHPLANE_*` variables.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to bind.
    #[arg(long, env = "AUTHPLANE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Users, clients and settings.
    #[arg(long, env = "AUTHPLANE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Issuer URL in metadata.
    #[arg(long, env = "AUTHPLANE_ISSUER")]
    pub issuer: Option<String>,
    /// `memory` or `postgres`.
    #[arg(long, env = "AUTHPLANE_STORE")]
    pub store: Option<StoreKind>,
    /// PostgreSQL URL, needed with `--store postgres`.
    #[arg(long, env = "AUTHPLANE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Login session lifetime.
    #[arg(long, env = "AUTHPLANE_SESSION_TTL")]
    pub session_ttl: Option<HumanDuration>,
    /// Authorization code lifetime.
    #[arg(long, env = "AUTHPLANE_CODE_TTL")]
    pub code_ttl: Option<HumanDuration>,
    /// Access token lifetime.
    #[arg(long, env = "AUTHPLANE_ACCESS_TOKEN_TTL")]
    pub access_token_ttl: Option<HumanDuration>,
    /// Refresh token lifetime.
    #[arg(long, env = "AUTHPLANE_REFRESH_TOKEN_TTL")]
    pub refresh_token_ttl: Option<HumanDuration>,
    /// Entries per cache (bounded).
    #[arg(long, env = "AUTHPLANE_CACHE_CAPACITY")]
    pub cache_capacity: Option<u64>,
    /// Longest time an entry stays cached.
    #[arg(long, env = "AUTHPLANE_CACHE_TTL")]
    pub cache_ttl: Option<HumanDuration>,
    /// Background sweeper period.
    #[arg(long, env = "AUTHPLANE_SWEEP_INTERVAL")]
    pub sweep_interval: Option<HumanDuration>,
    /// Rows removed per sweeper batch.
    #[arg(long, env = "AUTHPLANE_SWEEP_BATCH")]
    pub sweep_batch: Option<usize>,
    /// Store connections.
    #[arg(long, env = "AUTHPLANE_POOL_SIZE")]
    pub pool_size: Option<usize>,
    /// Longest wait for a store connection.
    #[arg(long, env = "AUTHPLANE_POOL_TIMEOUT")]
    pub pool_timeout: Option<HumanDuration>,
    /// Concurrent requests per hot endpoint.
    #[arg(long, env = "AUTHPLANE_MAX_INFLIGHT")]
    pub max_inflight: Option<usize>,
    /// Requests allowed to wait per hot endpoint before shedding.
    #[arg(long, env = "AUTHPLANE_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Longest time a request on a hot endpoint may take before it is answered 503.
    #[arg(long, env = "AUTHPLANE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<HumanDuration>,
    /// Time in-flight work gets on SIGTERM/SIGINT.
    #[arg(long, env = "AUTHPLANE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<HumanDuration>,
    /// `text` or `json`.
    #[arg(long, env = "AUTHPLANE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// When set, traces are exported over OTLP.
    #[arg(long, env = "AUTHPLANE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Window in which failed logins and client authentications are counted.
    #[arg(long, env = "AUTHPLANE_FAILURE_WINDOW")]
    pub failure_window: Option<HumanDuration>,
    /// Failed logins per username in the window before throttling starts.
    #[arg(long, env = "AUTHPLANE_LOGIN_MAX_FAILURES")]
    pub login_max_failures: Option<u32>,
    /// Failed logins per client address in the window before throttling starts.
    #[arg(long, env = "AUTHPLANE_ADDRESS_MAX_FAILURES")]
    pub address_max_failures: Option<u32>,
    /// Failed client authentications per client in the window before throttling starts.
    #[arg(long, env = "AUTHPLANE_CLIENT_MAX_FAILURES")]
    pub client_max_failures: Option<u32>,
    /// Concurrent argon2 verifications (password and client secret checks) across the process.
    #[arg(long, env = "AUTHPLANE_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,
}

macro_rules! overlay_fields {
    ($top:ident, $under:ident; $($f:ident),* $(,)?) => {
        Settings { $($f: $top.$f.or($under.$f),)* }
    };
}

impl Settings {
    /// `self` wins where it has a value; `under` fills the rest.
    pub fn overlay(self, under: Settings) -> Settings {
        let top = self;
        overlay_fields!(top, under; listen, config, issuer, store, database_url, session_ttl,
            code_ttl, access_token_ttl, refresh_token_ttl, cache_capacity, cache_ttl,
            sweep_interval, sweep_batch, pool_size, pool_timeout, max_inflight, queue_capacity,
            request_timeout, shutdown_grace, log_format, otlp_endpoint, failure_window,
            login_max_failures, address_max_failures, client_max_failures, hash_concurrency)
    }
}

/// A user from the config file. Users are first-party and static: the file is their directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// argon2id PHC string (`authplane hash-password`).
    pub password_hash: String,
    pub sub: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// argon2id PHC string of the secret; absent for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    /// Defaults to `client_secret_basic` with a secret and `none` without.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// PKCE is always required for public clients; this requires it for a confidential one too.
    #[serde(default)]
    pub require_pkce: bool,
}

/// The config file: `[settings]`, `[[users]]`, `[[clients]]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The resolved configuration the application runs with.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub issuer: String,
    pub store: StoreKind,
    #[serde(skip)]
    pub database_url: Option<String>,
    pub session_ttl: HumanDuration,
    pub code_ttl: HumanDuration,
    pub access_token_ttl: HumanDuration,
    pub refresh_token_ttl: HumanDuration,
    pub cache_capacity: u64,
    pub cache_ttl: HumanDuration,
    pub sweep_interval: HumanDuration,
    pub sweep_batch: usize,
    pub pool_size: usize,
    pub pool_timeout: HumanDuration,
    pub max_inflight: usize,
    pub queue_capacity: usize,
    pub request_timeout: HumanDuration,
    pub shutdown_grace: HumanDuration,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    pub failure_window: HumanDuration,
    pub login_max_failures: u32,
    pub address_max_failures: u32,
    pub client_max_failures: u32,
    pub hash_concurrency: usize,
    #[serde(skip)]
    pub users: Vec<UserConfig>,
    #[serde(skip)]
    pub clients: Vec<ClientConfig>,
}

pub const DEFAULT_CONFIG_PATH: &str = "config/authplane.toml";

fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}

impl Config {
    /// Loads the file named by the flags (or the default path) and overlays the flags on it.
    /// A missing file at the default path is not an error: the defaults and flags may suffice.
    pub fn load(args: Settings) -> Result<Config, ConfigError> {
        let explicit = args.config.clone();
        let path = explicit.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => parse_file(&path, &text)?,
            Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::resolve(args, file)
    }

    /// Overlays flags/environment on the file and fills in the defaults.
    pub fn resolve(args: Settings, file: FileConfig) -> Result<Config, ConfigError> {
        let s = args.overlay(file.settings);
        let cfg = Config {
            listen: s.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            issuer: s.issuer.unwrap_or_else(|| "http://127.0.0.1:8080".to_owned()),
            store: s.store.unwrap_or(StoreKind::Memory),
            database_url: s.database_url,
            session_ttl: s.session_ttl.unwrap_or(secs(8 * 3600)),
            code_ttl: s.code_ttl.unwrap_or(secs(60)),
            access_token_ttl: s.access_token_ttl.unwrap_or(secs(15 * 60)),
            refresh_token_ttl: s.refresh_token_ttl.unwrap_or(secs(30 * 86_400)),
            cache_capacity: s.cache_capacity.unwrap_or(100_000),
            cache_ttl: s.cache_ttl.unwrap_or(secs(30)),
            sweep_interval: s.sweep_interval.unwrap_or(secs(60)),
            sweep_batch: s.sweep_batch.unwrap_or(1000),
            pool_size: s.pool_size.unwrap_or(16),
            pool_timeout: s.pool_timeout.unwrap_or(secs(2)),
            max_inflight: s.max_inflight.unwrap_or(512),
            queue_capacity: s.queue_capacity.unwrap_or(1024),
            request_timeout: s.request_timeout.unwrap_or(secs(10)),
            shutdown_grace: s.shutdown_grace.unwrap_or(secs(10)),
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            otlp_endpoint: s.otlp_endpoint,
            failure_window: s.failure_window.unwrap_or(secs(15 * 60)),
            login_max_failures: s.login_max_failures.unwrap_or(10),
            address_max_failures: s.address_max_failures.unwrap_or(20),
            client_max_failures: s.client_max_failures.unwrap_or(10),
            hash_concurrency: s.hash_concurrency.unwrap_or_else(default_hash_concurrency),
            users: file.users,
            clients: file.clients,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let issuer = match url::Url::parse(&self.issuer) {
            Ok(u) => u,
            Err(e) => return bad(format!("issuer {:?}: {e}", self.issuer)),
        };
        if !matches!(issuer.scheme(), "http" | "https") || issuer.query().is_some() || issuer.fragment().is_some() {
            return bad("issuer must be an http(s) URL without query or fragment".into());
        }
        if self.store == StoreKind::Postgres && self.database_url.is_none() {
            return bad("--store postgres needs --database-url".into());
        }
        for (name, v) in [
            ("cache_capacity", self.cache_capacity as usize),
            ("sweep_batch", self.sweep_batch),
            ("pool_size", self.pool_size),
            ("max_inflight", self.max_inflight),
            ("hash_concurrency", self.hash_concurrency),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        for (name, d) in [
            ("session_ttl", self.session_ttl),
            ("code_ttl", self.code_ttl),
            ("access_token_ttl", self.access_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("sweep_interval", self.sweep_interval),
            ("request_timeout", self.request_timeout),
        ] {
            if d.0.is_zero() {
                return bad(format!("{name} must be longer than zero"));
            }
        }
        let mut seen = HashSet::new();
        for u in &self.users {
            if !seen.insert(u.username.as_str()) {
                return bad(format!("user {:?} is defined twice", u.username));
            }
            if let Err(e) = PasswordHashString::parse(&u.password_hash) {
                return bad(format!("user {:?}: {e}", u.username));
            }
        }
        let mut seen = HashSet::new();
        for c in &self.clients {
            let who = &c.client_id;
            if !seen.insert(c.client_id.as_str()) {
                return bad(format!("client {who:?} is defined twice"));
            }
            if c.client_id.is_empty() || c.client_id.contains(':') {
                return bad(format!("client {who:?}: client_id must be non-empty without ':'"));
            }
            if let Some(h) = &c.secret_hash {
                if let Err(e) = PasswordHashString::parse(h) {
                    return bad(format!("client {who:?}: {e}"));
                }
            }
            let method = c.auth_method();
            if (method == TokenEndpointAuthMethod::None) != c.secret_hash.is_none() {
                return bad(format!(
                    "client {who:?}: a secret_hash goes with client_secret_* and only with it"
                ));
            }
            if method == TokenEndpointAuthMethod::None && c.grant_types.contains(&GrantType::ClientCredentials) {
                return bad(format!("client {who:?}: a public client cannot use client_credentials"));
            }
            for uri in &c.redirect_uris {
                match url::Url::parse(uri) {
                    Ok(u) if u.fragment().is_none() && !u.cannot_be_a_base() => {}
                    _ => {
                        return bad(format!(
                            "client {who:?}: redirect_uri {uri:?} must be absolute, without fragment"
                        ));
                    }
                }
            }
            if c.grant_types.contains(&GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
                return bad(format!("client {who:?}: authorization_code needs a redirect_uri"));
            }
            if Scope::parse(&c.scopes.join(" ")).is_none() {
                return bad(format!("client {who:?}: invalid scope"));
            }
        }
        Ok(())
    }

    pub fn issuer_is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

impl ClientConfig {
    pub fn auth_method(&self) -> TokenEndpointAuthMethod {
        self.token_endpoint_auth_method
            .unwrap_or(if self.secret_hash.is_some() {
                TokenEndpointAuthMethod::ClientSecretBasic
            } else {
                TokenEndpointAuthMethod::None
            })
    }
}

pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        parse_file(Path::new("t.toml"), text).unwrap()
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let f = file("[settings]\nsession_ttl = \"3h\"\ncode_ttl = \"30s\"\n");
        let args = Settings {
            session_ttl: Some("1h".parse().unwrap()),
            ..Settings::default()
        };
        let cfg = Config::resolve(args, f).unwrap();
        assert_eq!(cfg.session_ttl.0, Duration::from_secs(3600));
        assert_eq!(cfg.code_ttl.0, Duration::from_secs(30));
        assert_eq!(cfg.access_token_ttl.0, Duration::from_secs(900));
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_rejected() {
        assert!(parse_file(Path::new("t"), "[settings]\nsesion_ttl = \"1h\"\n").is_err());
        assert!(parse_file(Path::new("t"), "[settings]\nsession_ttl = \"soon\"\n").is_err());
    }

    #[test]
    fn the_demo_config_loads() {
        let text = std::fs::read_to_string(DEFAULT_CONFIG_PATH).unwrap();
        let cfg = Config::resolve(Settings::default(), file(&text)).unwrap();
        assert!(cfg.users.iter().any(|u| u.username == "alice" && u.sub == "u-alice"));
        let app = cfg.clients.iter().find(|c| c.client_id == "demo-app").unwrap();
        assert_eq!(app.auth_method(), TokenEndpointAuthMethod::ClientSecretBasic);
        let spa = cfg.clients.iter().find(|c| c.client_id == "demo-spa").unwrap();
        assert_eq!(spa.auth_method(), TokenEndpointAuthMethod::None);
    }

    #[test]
    fn postgres_needs_a_url() {
        let args = Settings {
            store: Some(StoreKind::Postgres),
            ..Settings::default()
        };
        assert!(Config::resolve(args, FileConfig::default()).is_err());
    }
}
