//! A resource server that takes authplane's JWT access tokens: `GET /api/me` answers the caller's
//! token claims as JSON, to a token meant for this server's audience with scope `profile`.
//!
//! ```sh
//! cargo run --example resource_server
//! ```
//!
//! Environment (all optional): `RESOURCE_SERVER_ISSUER` (authplane's `--issuer`, default
//! `http://127.0.0.1:8080`), `RESOURCE_SERVER_AUDIENCE` (this server's resource URI, default
//! `https://api.example.test`), `RESOURCE_SERVER_LISTEN` (default `127.0.0.1:9100`), and
//! `RUST_LOG` (`debug` logs why each token was refused).
//!
//! [`auth`] is the part to copy; this file is only the wiring. The repository's test
//! `tests/api/resource_server.rs` compiles both and runs them against a real authplane.

pub mod auth;

use axum::routing::get;
use axum::{Json, Router};
use tracing_subscriber::EnvFilter;

use auth::{AccessToken, AuthError, Verifier};

/// The scope `/api/me` requires.
pub const ME_SCOPE: &str = "profile";

/// The application: its routes, with the verifier as their state.
pub fn router(verifier: Verifier) -> Router {
    Router::new().route("/api/me", get(me)).with_state(verifier)
}

/// The extractor has checked the token; which scope a route needs is the handler's decision.
async fn me(token: AccessToken) -> Result<Json<AccessToken>, AuthError> {
    if !token.has_scope(ME_SCOPE) {
        return Err(AuthError::InsufficientScope(ME_SCOPE));
    }
    Ok(Json(token))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let issuer = env_or("RESOURCE_SERVER_ISSUER", "http://127.0.0.1:8080");
    let audience = env_or("RESOURCE_SERVER_AUDIENCE", "https://api.example.test");
    let listen = env_or("RESOURCE_SERVER_LISTEN", "127.0.0.1:9100");

    let verifier = Verifier::new(&issuer, &audience)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(addr = %listener.local_addr()?, %issuer, %audience, "resource server listening");
    axum::serve(listener, router(verifier)).await?;
    Ok(())
}
