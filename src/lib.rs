//! authplane: a fast OAuth 2.0 authorization server.
//!
//! # Layout
//! Data flows one way: listener → tower layers → thin handler → service → cache → store.
//!
//! - [`config`]: the flags, environment and TOML file, resolved once into [`config::Config`].
//! - [`app`]: `Application::build` binds and wires everything; `run` serves and drains.
//! - [`shutdown`]: signals into the root cancellation token.
//! - [`error`]: the one client-facing error type and its exhaustive status mapping.
//! - [`telemetry`]: tracing subscriber and the application's own Prometheus registry.
//! - [`crypto`]: random credentials, SHA-256 hashes, PKCE, argon2id, constant-time compare.
//! - [`domain`]: newtypes that parse once (scope, PKCE values, timestamps, hashes).
//! - [`clock`]: where `now` comes from (the system, or a test's manual clock).
//! - [`http`]: routes, extractors, handlers; [`layers`]: latency metrics and admission control.
//! - [`service`]: sessions, authorization, tokens (one file per grant), clients, revocation.
//! - [`cache`]: bounded moka caches with invalidation and metrics.
//! - [`store`]: the store traits, and the in-memory implementation.
//! - [`sweeper`]: the background removal of expired records and pending revocation work.
//! - [`health`]: readiness and the `/debug/health` document.

pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod health;
pub mod http;
pub mod layers;
pub mod otlp;
pub mod queue_delay;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod telemetry;

pub use app::{Application, Options};
pub use config::Config;
