//! authplane: a fast OAuth 2.0 authorization server.
//!
//! # Layout
//! Data flows one way: listener → tower layers → thin handler → service → cache → store.
//!
//! - [`config`]: the flags, environment and TOML file, resolved once into [`config::Config`].
//! - [`app`]: `Application::build` binds and wires everything; `run` serves and drains.
//! - [`server`]: the accept loop: connection cap, header/body/idle deadlines, graceful close.
//! - [`shutdown`]: signals into the root cancellation token.
//! - [`error`]: the one client-facing error type and its exhaustive status mapping.
//! - [`telemetry`]: tracing subscriber and the application's own Prometheus registry.
//! - [`crypto`]: random credentials, SHA-256 hashes, PKCE, argon2id, constant-time compare.
//! - [`domain`]: newtypes that parse once (scope, PKCE values, timestamps, hashes), and the
//!   parsed clients and users the registries serve.
//! - [`clock`]: where `now` comes from (the system, or a test's manual clock).
//! - [`http`]: routes, extractors, handlers; [`layers`]: latency metrics, admission control and CORS.
//! - [`service`]: sessions, authorization, tokens (one file per grant), clients, revocation.
//! - [`cache`]: bounded moka caches with invalidation and metrics.
//! - [`store`]: the `Store` trait and its records; `memory` (dashmap with an expiry index) and
//!   `postgres/` (pool and migrations, SQL, rows, the `Store` impl, the LISTEN feed).
//! - [`sweeper`]: the background removal of expired records and pending revocation work.
//! - [`health`]: readiness and the `/debug/health` document.
//!
//! The external names (settings, endpoints, metrics) and the invariants that code comments cite
//! are in `docs/reference.md`, checked against the code by `tests/api/reference.rs`.

pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod health;
pub mod http;
pub mod layers;
pub mod otlp;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod telemetry;

pub use app::{Application, Options};
pub use config::Config;
