//! One integration-test binary: each module is an area of docs/reference.md, driving a real server on
//! 127.0.0.1:0 (see `helpers::spawn_app`). Set `TEST_LOG=1` to see the server's logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod fuzz_regressions;
mod helpers;
mod test_store;

mod admin;
mod architecture;
mod authorize;
mod browser;
mod caches;
mod capacity;
mod client_library;
mod config;
mod connections;
mod consent;
mod cors;
mod dpop;
mod invariants;
mod jwt_access;
mod login;
mod logout;
mod malformed;
mod metadata;
mod oidc;
mod openapi;
mod otlp;
mod overload;
mod par;
mod pg;
mod postgres;
mod private_key_jwt;
mod process;
mod reference;
mod refresh;
mod registration;
mod resource_server;
mod revoke;
mod signals;
mod store_contract;
mod sweeper;
mod throttle;
mod token;
mod userinfo;
mod users_admin;
