//! Configuration: one `Settings` struct that is at once the clap flags (with their
//! `AUTHPLANE_*` environment variables) and the `[settings]` table of the TOML file. Precedence is
//! flag > environment > file > default: clap resolves the first two, [`Settings::overlay`] the
//! file, [`Config::resolve`] the defaults. Durations are parsed once, here.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::crypto::PasswordHashString;
pub use crate::domain::TokenEndpointAuthMethod;
use crate::domain::{AccessTokenFormat, Client, ClientKey, GrantType, Origin, RegisteredUri, Resources, Scope, User};
pub use crate::jose::Alg;
use crate::jose::PublicKey;
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

/// A size: bytes (`16384`) or binary units (`16KiB`, `1MiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: usize = n
            .parse()
            .map_err(|_| format!("{s:?} is not a size such as 16384, 16KiB or 1MiB"))?;
        let factor = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1024,
            "MiB" => 1024 * 1024,
            _ => return Err(format!("{s:?}: the units are B, KiB and MiB")),
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(Self(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            n if n % (1024 * 1024) == 0 && n > 0 => s.collect_str(&format_args!("{}MiB", n / (1024 * 1024))),
            n if n % 1024 == 0 && n > 0 => s.collect_str(&format_args!("{}KiB", n / 1024)),
            n => s.serialize_u64(n as u64),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Declares every setting once: its doc line (the `--help` text), its name (the TOML key; clap
/// derives the `--kebab-case` flag), its type, its default, and its environment variable. From
/// that list come [`Settings`] (every field optional, so the layers can be overlaid),
/// [`Settings::overlay`], and the resolved [`Config`] with the defaults filled in. A setting
/// without a default stays an `Option` in `Config`.
macro_rules! settings {
    (
        $(
            $(#[doc = $doc:literal])*
            $(#[settings($sattr:meta)])*
            $(#[config($cattr:meta)])*
            $name:ident : $ty:ty $(= $default:expr)?, env $env:literal;
        )*
    ) => {
        /// Every setting, each optional so that the layers can be overlaid. Field names are the
        /// TOML keys; clap derives `--kebab-case` flags and we name the `AUTHPLANE_*` variables.
        #[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env)]
                $(#[$sattr])*
                pub $name: Option<$ty>,
            )*
        }

        impl Settings {
            /// `self` wins where it has a value; `under` fills the rest.
            pub fn overlay(self, under: Settings) -> Settings {
                Settings { $($name: self.$name.or(under.$name),)* }
            }
        }

        /// The resolved configuration the application runs with.
        #[derive(Clone, Debug, Serialize)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                $(#[$cattr])*
                pub $name: settings!(@type $ty $(, $default)?),
            )*
            /// The users of the config file, parsed and checked.
            #[serde(skip)]
            pub users: Vec<User>,
            /// The clients of the config file, parsed and checked.
            #[serde(skip)]
            pub clients: Vec<Client>,
        }

        impl Config {
            fn with_defaults(s: Settings, users: Vec<User>, clients: Vec<Client>) -> Config {
                Config {
                    $($name: settings!(@value s.$name $(, $default)?),)*
                    users,
                    clients,
                }
            }
        }
    };
    (@type $ty:ty, $default:expr) => { $ty };
    (@type $ty:ty) => { Option<$ty> };
    (@value $v:expr, $default:expr) => { $v.unwrap_or_else(|| $default) };
    (@value $v:expr) => { $v };
}

settings! {
    /// Address to bind.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), env "AUTHPLANE_LISTEN";
    /// Users, clients and settings.
    #[settings(serde(skip))]
    #[config(serde(skip))]
    config: PathBuf, env "AUTHPLANE_CONFIG";
    /// Issuer URL in metadata.
    issuer: String = "http://127.0.0.1:8080".to_owned(), env "AUTHPLANE_ISSUER";
    /// `memory` or `postgres`.
    store: StoreKind = StoreKind::Memory, env "AUTHPLANE_STORE";
    /// PostgreSQL URL, needed with `--store postgres`.
    #[config(serde(skip))]
    database_url: String, env "AUTHPLANE_DATABASE_URL";
    /// Login session lifetime.
    session_ttl: HumanDuration = secs(8 * 3600), env "AUTHPLANE_SESSION_TTL";
    /// Authorization code lifetime.
    code_ttl: HumanDuration = secs(60), env "AUTHPLANE_CODE_TTL";
    /// Access token lifetime.
    access_token_ttl: HumanDuration = secs(15 * 60), env "AUTHPLANE_ACCESS_TOKEN_TTL";
    /// Refresh token lifetime.
    refresh_token_ttl: HumanDuration = secs(30 * 86_400), env "AUTHPLANE_REFRESH_TOKEN_TTL";
    /// Entries per cache (bounded).
    cache_capacity: u64 = 100_000, env "AUTHPLANE_CACHE_CAPACITY";
    /// Longest time an entry stays cached.
    cache_ttl: HumanDuration = secs(30), env "AUTHPLANE_CACHE_TTL";
    /// Background sweeper period.
    sweep_interval: HumanDuration = secs(60), env "AUTHPLANE_SWEEP_INTERVAL";
    /// Rows removed per sweeper batch.
    sweep_batch: usize = 1000, env "AUTHPLANE_SWEEP_BATCH";
    /// Store connections.
    pool_size: usize = 16, env "AUTHPLANE_POOL_SIZE";
    /// Longest wait for a store connection.
    pool_timeout: HumanDuration = secs(2), env "AUTHPLANE_POOL_TIMEOUT";
    /// Concurrent requests per hot endpoint.
    max_inflight: usize = 512, env "AUTHPLANE_MAX_INFLIGHT";
    /// Requests allowed to wait per hot endpoint before shedding.
    queue_capacity: usize = 1024, env "AUTHPLANE_QUEUE_CAPACITY";
    /// Longest time a request on a hot endpoint may take before it is answered 503.
    request_timeout: HumanDuration = secs(10), env "AUTHPLANE_REQUEST_TIMEOUT";
    /// Time in-flight work gets on SIGTERM/SIGINT.
    shutdown_grace: HumanDuration = secs(10), env "AUTHPLANE_SHUTDOWN_GRACE";
    /// Longest time a client may take to send a request's headers.
    header_timeout: HumanDuration = secs(10), env "AUTHPLANE_HEADER_TIMEOUT";
    /// Longest time a client may take to send a request's body.
    body_timeout: HumanDuration = secs(10), env "AUTHPLANE_BODY_TIMEOUT";
    /// An idle keep-alive connection is closed after this long.
    idle_timeout: HumanDuration = secs(60), env "AUTHPLANE_IDLE_TIMEOUT";
    /// Open client connections; past it, new ones wait in the backlog.
    max_connections: usize = 10_000, env "AUTHPLANE_MAX_CONNECTIONS";
    /// All request headers together; more is 431.
    max_header_bytes: ByteSize = ByteSize(16 * 1024), env "AUTHPLANE_MAX_HEADER_BYTES";
    /// When set, `/metrics` and `/debug/health` move to this address (and leave the public one).
    management_listen: SocketAddr, env "AUTHPLANE_MANAGEMENT_LISTEN";
    /// `text` or `json`.
    log_format: LogFormat = LogFormat::Text, env "AUTHPLANE_LOG_FORMAT";
    /// When set, traces are exported over OTLP.
    otlp_endpoint: String, env "AUTHPLANE_OTLP_ENDPOINT";
    /// Window in which failed logins and client authentications are counted.
    failure_window: HumanDuration = secs(15 * 60), env "AUTHPLANE_FAILURE_WINDOW";
    /// Failed logins per username in the window before throttling starts.
    login_max_failures: u32 = 10, env "AUTHPLANE_LOGIN_MAX_FAILURES";
    /// Failed logins per client address in the window before throttling starts.
    address_max_failures: u32 = 20, env "AUTHPLANE_ADDRESS_MAX_FAILURES";
    /// Failed client authentications per client in the window before throttling starts.
    client_max_failures: u32 = 10, env "AUTHPLANE_CLIENT_MAX_FAILURES";
    /// Records the memory store holds; when full, new issuance is 503 `temporarily_unavailable`
    /// with `Retry-After`, and no live credential is ever evicted. The PostgreSQL store ignores it.
    memory_store_capacity: usize = 2_000_000, env "AUTHPLANE_MEMORY_STORE_CAPACITY";
    /// Concurrent argon2 verifications (password and client secret checks) across the process.
    hash_concurrency: usize = default_hash_concurrency(), env "AUTHPLANE_HASH_CONCURRENCY";
    /// Signature algorithm of JWT access tokens (clients with `access_token_format = "jwt"`).
    access_token_alg: Alg = Alg::ES256, env "AUTHPLANE_ACCESS_TOKEN_ALG";
    /// Lifetime of a pushed authorization request's `request_uri`.
    par_ttl: HumanDuration = secs(60), env "AUTHPLANE_PAR_TTL";
    /// How far a DPoP proof's `iat` may lie from the server's clock (either way).
    dpop_max_age: HumanDuration = secs(60), env "AUTHPLANE_DPOP_MAX_AGE";
    /// DPoP proof `jti`s a node remembers (each for twice `--dpop-max-age`); past it the oldest
    /// are dropped and `/debug/health` counts them. Size it to the proofs a node verifies in
    /// that window.
    dpop_replay_capacity: u64 = crate::service::dpop::REPLAY_CAPACITY, env "AUTHPLANE_DPOP_REPLAY_CAPACITY";
    /// ID token lifetime.
    id_token_ttl: HumanDuration = secs(3600), env "AUTHPLANE_ID_TOKEN_TTL";
    /// Each algorithm's signing key is replaced after this long.
    key_rotation_interval: HumanDuration = secs(30 * 86_400), env "AUTHPLANE_KEY_ROTATION_INTERVAL";
    /// A new key is in the JWKS this long before it signs anything.
    key_publish_ahead: HumanDuration = secs(3600), env "AUTHPLANE_KEY_PUBLISH_AHEAD";
    /// When true, `POST /auth/register` needs no initial access token (anyone may register a
    /// client; registered clients are third-party, so each user still consents).
    #[settings(arg(num_args = 0..=1, default_missing_value = "true"))]
    open_registration: bool = false, env "AUTHPLANE_OPEN_REGISTRATION";
    /// Base64 of 32 random bytes; private signing keys are stored encrypted with it. Required
    /// with `--store postgres`; the memory store draws one at start-up when it is not given.
    #[config(serde(skip))]
    key_encryption_key: Secret, env "AUTHPLANE_KEY_ENCRYPTION_KEY";
}

/// A setting that is a secret (`--key-encryption-key`): it never appears in `Debug`, logs or
/// `check-config` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// A user as the config file writes it; [`UserConfig::parse`] checks it into a [`User`].
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

/// A client as the config file writes it; [`ClientConfig::parse`] checks it into a [`Client`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// argon2id PHC string of the secret; absent for public clients.
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    /// Defaults to `client_secret_basic` with a secret and `none` without.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// PKCE is always required for public clients; this requires it for a confidential one too.
    #[serde(default)]
    pub require_pkce: bool,
    /// Origins (`scheme://host[:port]`) whose pages may call the token plane (CORS); absent, the
    /// origins of the redirect URIs; `[]` for none.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// The name the consent page shows.
    pub client_name: Option<String>,
    /// `false` for a client that needs the user's consent; config-file clients are first-party
    /// by default.
    #[serde(default = "yes")]
    pub first_party: bool,
    /// Where RP-initiated logout may send the browser back to (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `RS256` (the default), `ES256` or `EdDSA`.
    pub id_token_signed_response_alg: Option<Alg>,
    /// `opaque` (the default) or `jwt` (RFC 9068, signed with `--access-token-alg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_format: Option<AccessTokenFormat>,
    /// Absolute URIs of the resource servers it may ask tokens for (RFC 8707 `resource`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Its token requests must carry a DPoP proof (RFC 9449), so all its tokens are bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// `private_key_jwt` (RFC 7523): the client's public keys, a JWK Set
    /// (`jwks = { keys = [ { kty = "EC", crv = "P-256", x = "...", y = "..." } ] }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwkSet>,
    /// Its authorize requests must be pushed to `/auth/par` first (RFC 9126).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
}

/// A JWK Set as a config file writes it (RFC 7517 section 5).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct JwkSet {
    pub keys: Vec<serde_json::Value>,
}

impl JwkSet {
    /// Each key with the algorithm it is for: its `alg`, else what its type implies (an RSA
    /// key RS256, a P-256 key ES256, an Ed25519 key EdDSA). Private members are refused: a
    /// config file must not hold the client's private key.
    fn parse(&self) -> Result<Vec<ClientKey>, String> {
        self.keys
            .iter()
            .map(|jwk| {
                let text = |k: &str| jwk.get(k).and_then(|v| v.as_str());
                if ["d", "p", "q", "dp", "dq", "qi", "k"]
                    .iter()
                    .any(|m| jwk.get(m).is_some())
                {
                    return Err("jwks: a key holds private or symmetric members; give the public key only".to_owned());
                }
                if text("use").is_some_and(|u| u != "sig") {
                    return Err("jwks: a key's use must be sig".to_owned());
                }
                let alg = match (text("alg"), text("kty"), text("crv")) {
                    (Some(a), _, _) => Alg::parse(a),
                    (None, Some("RSA"), _) => Some(Alg::RS256),
                    (None, Some("EC"), Some("P-256")) => Some(Alg::ES256),
                    (None, Some("OKP"), Some("Ed25519")) => Some(Alg::EdDSA),
                    _ => None,
                };
                // RSA under 2048 bits never verifies here (aws-lc's RS256 floor): refused now,
                // not at the client's first request.
                let short_rsa =
                    text("kty") == Some("RSA") && text("n").is_none_or(|n| n.trim_end_matches('=').len() * 6 < 2048);
                if short_rsa {
                    return Err("jwks: RSA keys must have at least 2048 bits".to_owned());
                }
                let key = alg
                    .and_then(|alg| PublicKey::from_jwk_for(alg, jwk))
                    .ok_or("jwks: each key must be an RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key")?;
                Ok(ClientKey {
                    kid: text("kid").map(str::to_owned),
                    key,
                })
            })
            .collect()
    }
}

fn yes() -> bool {
    true
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

    /// Overlays flags/environment on the file, fills in the defaults, and parses the users and
    /// clients once into the types the services take as they are.
    pub fn resolve(args: Settings, file: FileConfig) -> Result<Config, ConfigError> {
        let invalid = ConfigError::Invalid;
        let (mut usernames, mut subs) = (HashSet::new(), HashSet::new());
        let mut users = Vec::with_capacity(file.users.len());
        for u in &file.users {
            if !usernames.insert(u.username.as_str()) {
                return Err(invalid(format!("user {:?} is defined twice", u.username)));
            }
            // Two users with one sub would be one subject to every client: the second one's
            // claims served for the first.
            if !subs.insert(u.sub.as_str()) {
                return Err(invalid(format!(
                    "user {:?}: sub {:?} belongs to another user",
                    u.username, u.sub
                )));
            }
            users.push(u.parse().map_err(|e| invalid(format!("user {:?}: {e}", u.username)))?);
        }
        let mut seen = HashSet::new();
        let mut clients = Vec::with_capacity(file.clients.len());
        for c in &file.clients {
            if !seen.insert(c.client_id.as_str()) {
                return Err(invalid(format!("client {:?} is defined twice", c.client_id)));
            }
            clients.push(
                c.parse()
                    .map_err(|e| invalid(format!("client {:?}: {e}", c.client_id)))?,
            );
        }
        let cfg = Config::with_defaults(args.overlay(file.settings), users, clients);
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
        match &self.key_encryption_key {
            Some(kek) => {
                if let Err(e) = crate::jose::KeyEncryptionKey::parse(kek.expose()) {
                    return bad(format!(
                        "key_encryption_key: {e} (for example: openssl rand -base64 32)"
                    ));
                }
            }
            // Nodes sharing a database must open each other's keys, and a restarted node its own.
            None if self.store == StoreKind::Postgres => {
                return bad(
                    "--store postgres needs --key-encryption-key (base64 of 32 random bytes: openssl rand -base64 32), the same on every node"
                        .into(),
                );
            }
            None => {}
        }
        if self.key_publish_ahead.0 >= self.key_rotation_interval.0 {
            return bad("key_publish_ahead must be shorter than key_rotation_interval".into());
        }
        for (name, v) in [
            ("cache_capacity", self.cache_capacity as usize),
            ("sweep_batch", self.sweep_batch),
            ("pool_size", self.pool_size),
            ("max_inflight", self.max_inflight),
            ("hash_concurrency", self.hash_concurrency),
            ("max_connections", self.max_connections),
            ("memory_store_capacity", self.memory_store_capacity),
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
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("id_token_ttl", self.id_token_ttl),
            ("key_rotation_interval", self.key_rotation_interval),
            ("key_publish_ahead", self.key_publish_ahead),
        ] {
            if d.0.is_zero() {
                return bad(format!("{name} must be longer than zero"));
            }
        }
        if self.max_header_bytes.0 < 1024 {
            return bad("max_header_bytes must be at least 1KiB".into());
        }
        Ok(())
    }

    pub fn issuer_is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

impl UserConfig {
    pub fn parse(&self) -> Result<User, String> {
        Ok(User {
            username: self.username.clone(),
            sub: Arc::from(self.sub.as_str()),
            name: self.name.clone(),
            email: self.email.clone(),
            email_verified: self.email_verified,
            password: Arc::new(PasswordHashString::parse(&self.password_hash)?),
            disabled: false,
            not_before: None,
        })
    }
}

impl ClientConfig {
    pub fn auth_method(&self) -> TokenEndpointAuthMethod {
        self.token_endpoint_auth_method
            .unwrap_or(match (&self.secret_hash, &self.jwks) {
                (Some(_), _) => TokenEndpointAuthMethod::ClientSecretBasic,
                (None, Some(_)) => TokenEndpointAuthMethod::PrivateKeyJwt,
                (None, None) => TokenEndpointAuthMethod::None,
            })
    }

    pub fn parse(&self) -> Result<Client, String> {
        if self.client_id.is_empty() || self.client_id.contains(':') {
            return Err("client_id must be non-empty without ':'".into());
        }
        let secret = match &self.secret_hash {
            Some(h) => Some(Arc::new(PasswordHashString::parse(h)?)),
            None => None,
        };
        let auth_method = self.auth_method();
        let secret_method = matches!(
            auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost
        );
        if secret_method != secret.is_some() {
            return Err("a secret_hash goes with client_secret_* and only with it".into());
        }
        let jwks = match (&self.jwks, auth_method) {
            (Some(set), TokenEndpointAuthMethod::PrivateKeyJwt) => set.parse()?,
            (None, TokenEndpointAuthMethod::PrivateKeyJwt) => {
                return Err("private_key_jwt needs jwks (the client's public keys)".into());
            }
            (Some(_), _) => return Err("jwks goes with token_endpoint_auth_method = \"private_key_jwt\"".into()),
            (None, _) => Vec::new(),
        };
        if auth_method == TokenEndpointAuthMethod::PrivateKeyJwt && jwks.is_empty() {
            return Err("private_key_jwt needs at least one key in jwks".into());
        }
        if auth_method == TokenEndpointAuthMethod::None && self.grant_types.contains(&GrantType::ClientCredentials) {
            return Err("a public client cannot use client_credentials".into());
        }
        let redirect_uris = self
            .redirect_uris
            .iter()
            .map(|uri| {
                RegisteredUri::parse(uri)
                    .ok_or_else(|| format!("redirect_uri {uri:?} must be absolute, without fragment"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
            return Err("authorization_code needs a redirect_uri".into());
        }
        let scope = Scope::parse(&self.scopes.join(" ")).ok_or("invalid scope")?;
        let mut allowed_origins = match &self.allowed_origins {
            Some(origins) => origins
                .iter()
                .map(|o| {
                    Origin::parse(o).ok_or_else(|| {
                        format!("allowed_origins: {o:?} must be an http(s) origin, scheme://host[:port] without a path")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => redirect_uris.iter().filter_map(Origin::of_redirect).collect(),
        };
        allowed_origins.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed_origins.dedup();
        let post_logout_redirect_uris = self
            .post_logout_redirect_uris
            .iter()
            .map(|uri| {
                RegisteredUri::parse(uri)
                    .ok_or_else(|| format!("post_logout_redirect_uri {uri:?} must be absolute, without fragment"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            client_id: Arc::from(self.client_id.as_str()),
            secret,
            redirect_uris,
            grant_types: self.grant_types.clone(),
            scope,
            auth_method,
            require_pkce: self.require_pkce,
            allowed_origins,
            client_name: self.client_name.clone(),
            first_party: self.first_party,
            post_logout_redirect_uris,
            id_token_alg: self.id_token_signed_response_alg.unwrap_or(Alg::RS256),
            access_token_format: self.access_token_format.unwrap_or_default(),
            resources: Resources::parse(&self.resources).ok_or("resources must be absolute URIs without a fragment")?,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            jwks: jwks.into(),
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
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
        assert!(cfg.users.iter().any(|u| u.username == "alice" && &*u.sub == "u-alice"));
        let app = cfg.clients.iter().find(|c| &*c.client_id == "demo-app").unwrap();
        assert_eq!(app.auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        let spa = cfg.clients.iter().find(|c| &*c.client_id == "demo-spa").unwrap();
        assert_eq!(spa.auth_method, TokenEndpointAuthMethod::None);
        let origins: Vec<_> = spa.allowed_origins.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            origins,
            ["http://127.0.0.1:9000"],
            "the SPA's pages may call the token plane"
        );
    }

    #[test]
    fn users_sharing_a_sub_or_a_username_are_refused() {
        let hash = crate::crypto::hash_password("x", crate::crypto::Argon2Params::cheap()).unwrap();
        let user = |name: &str, sub: &str| {
            format!("[[users]]\nusername = {name:?}\nsub = {sub:?}\npassword_hash = {hash:?}\n")
        };
        let resolve = |text: String| Config::resolve(Settings::default(), file(&text));
        assert!(resolve(user("a", "s1") + &user("b", "s2")).is_ok());
        let err = resolve(user("a", "s1") + &user("b", "s1")).unwrap_err().to_string();
        assert!(err.contains("sub \"s1\" belongs to another user"), "{err}");
        let err = resolve(user("a", "s1") + &user("a", "s2")).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
    }

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        assert_eq!("16384".parse::<ByteSize>(), Ok(ByteSize(16384)));
        assert_eq!("16KiB".parse::<ByteSize>(), Ok(ByteSize(16 * 1024)));
        assert_eq!("2MiB".parse::<ByteSize>(), Ok(ByteSize(2 * 1024 * 1024)));
        assert!("16KB".parse::<ByteSize>().is_err());
        assert!("lots".parse::<ByteSize>().is_err());
        let f = file("[settings]\nmax_header_bytes = \"32KiB\"\n");
        assert_eq!(
            Config::resolve(Settings::default(), f).unwrap().max_header_bytes,
            ByteSize(32 * 1024)
        );
        let f = file("[settings]\nmax_header_bytes = 4096\n");
        assert_eq!(
            Config::resolve(Settings::default(), f).unwrap().max_header_bytes,
            ByteSize(4096)
        );
    }

    #[test]
    fn allowed_origins_default_to_the_redirect_uris_and_are_checked() {
        let client = |extra: &str| {
            let text = format!(
                "[[clients]]\nclient_id = \"c\"\nredirect_uris = [\"http://127.0.0.1:9000/spa\", \
                 \"http://127.0.0.1:9000/other\", \"com.example:/cb\"]\ngrant_types = [\"authorization_code\"]\n\
                 scopes = [\"openid\"]\n{extra}"
            );
            Config::resolve(Settings::default(), file(&text)).map(|cfg| {
                cfg.clients[0]
                    .allowed_origins
                    .iter()
                    .map(|o| o.as_str().to_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(client("").unwrap(), ["http://127.0.0.1:9000"]);
        assert_eq!(
            client("allowed_origins = [\"https://spa.example\", \"http://localhost:3000\"]").unwrap(),
            ["http://localhost:3000", "https://spa.example"]
        );
        assert!(client("allowed_origins = []").unwrap().is_empty());
        let err = client("allowed_origins = [\"https://spa.example/app\"]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("client \"c\": allowed_origins: \"https://spa.example/app\""),
            "{err}"
        );
        assert!(client("allowed_origins = [\"*\"]").is_err());
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
