//! authplane-testkit: what is not the product, in one place for the tests, the benches, the fuzz
//! targets and the load tool (kanidm's `server/testkit` is the model). The server crate takes it
//! as a dev-dependency only, so none of it is compiled into `authplane`.
//!
//! # Layout
//! - [`fixture`]: the demo users and clients, one TOML text loaded by the server's config loader,
//!   and their credentials as constants.
//! - [`oauth`]: the small OAuth client: session cookie, PKCE pairs, Basic client authentication,
//!   the code in a redirect.
//! - [`app`]: `TestApp`, a real server on 127.0.0.1:0 with a manual clock, and protocol helpers.
//! - [`fuzz`]: the fuzz entry points, shared by `fuzz/` and the regression test that replays
//!   their inputs.

pub mod app;
pub mod fixture;
pub mod fuzz;
pub mod oauth;

pub use app::{TestApp, json, location_params, param, s, spawn_app, spawn_issuer, spawn_with, test_config};
pub use fixture::{
    ALICE, ALICE_PASSWORD, ALICE_SUB, API, APP, APP_BASIC, APP_REDIRECT, APP_SECRET, BILLING, BOB, BOB_PASSWORD,
    DPOP_APP, JWT_APP, OTHER, OTHER_REDIRECT, OTHER_SECRET, PAR_APP, SPA, SPA_REDIRECT,
};
pub use oauth::{Pkce, SESSION_COOKIE, VERIFIER, session_cookie, session_header};
