//! authplane: a fast OAuth 2.0 authorization server.
//!
//! # Layout
//! Data flows one way: listener → tower layers → thin handler → service → cache → store.
//!
//! Public, for `main.rs`, the test kit (`testkit/`), the tests, the benches and the load tool:
//! - [`config`]: the flags, environment and TOML file, resolved once into [`Config`].
//! - [`crypto`]: random credentials, SHA-256 hashes, PKCE, argon2id, constant-time compare.
//! - [`jose`]: JWS signing and verification, JWKs, key generation and the AEAD that seals
//!   private keys, on one provider (aws-lc-rs).
//! - [`domain`]: newtypes that parse once (scope, PKCE values, timestamps, hashes), and the
//!   parsed clients and users the registries serve.
//! - [`service`]: sessions, authorization, tokens (one file per grant), clients, revocation,
//!   signing keys (`keys`) and ID tokens.
//! - [`cache`]: bounded caches (quick_cache, S3-FIFO) with invalidation and metrics.
//! - [`store`]: the `Store` trait and its records; `memory` (dashmap with an expiry index) and
//!   `postgres/` (pool and migrations, SQL, rows, the `Store` impl, the LISTEN feed).
//! - [`telemetry`]: tracing subscriber, the OTLP export and the application's own Prometheus
//!   registry.
//!
//! Private, each reached only through the single types re-exported below:
//! - `app`: [`Application::build`] binds and wires everything; `run` serves and drains.
//! - `server`: the accept loop: connection cap, header/body/idle deadlines, graceful close.
//! - `shutdown`: signals ([`Signals`]) into the root cancellation token.
//! - `state`: [`AppState`], the cheap-clone service handles the handlers take.
//! - `clock`: where `now` comes from ([`Clock`]: the system, or a test's manual clock).
//! - `error`: the one client-facing error type and its exhaustive status mapping.
//! - `http`: routes, extractors, handlers, and the benchmark's [`baseline_router`]; its parsers
//!   of client input are re-exported in `parse` for the fuzz targets only.
//! - `layers`: latency metrics, admission control ([`Admission`]) and CORS.
//! - `sweeper`: the background removal of expired records ([`Sweeper`], [`SweepStats`]).
//! - `health`: readiness and the `/debug/health` document; `otlp`: the optional trace export.
//!
//! Not here: fixtures, `TestApp`, the test and load-tool OAuth client and the fuzz entry points
//! live in the `authplane-testkit` crate, a dev-dependency only.
//!
//! The external names (settings, endpoints, metrics) and the invariants that code comments cite
//! are in `docs/reference.md`, checked against the code by `tests/api/reference.rs`.

mod app;
pub mod cache;
mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
mod error;
mod health;
mod http;
pub mod jose;
mod layers;
mod otlp;
mod server;
pub mod service;
mod shutdown;
mod state;
pub mod store;
mod sweeper;
pub mod telemetry;

pub use app::{Application, Options};
pub use clock::Clock;
pub use config::Config;
pub use http::{HttpService, baseline_router};
pub use layers::admission::Admission;
pub use shutdown::Signals;
pub use state::AppState;
pub use sweeper::{SweepStats, Sweeper};

/// The parsers of client input (form bodies and query strings, client credentials, bearer
/// tokens, cookies), public for the fuzz targets of the test kit and nothing else.
#[doc(hidden)]
pub mod parse {
    pub use crate::http::extract::{Params, bearer_token, client_credentials, cookie};
}
