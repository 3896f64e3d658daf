//! The services on the in-memory store, called as the handlers call them (no HTTP): authorize,
//! the token endpoint for each grant (client authentication with a cached secret included), and
//! userinfo. `cargo bench --bench service`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use authplane::AppState;
use authplane::service::tokens::{Presented, TokenRequest};
use authplane::service::{AuthorizeOutcome, AuthorizeRequest, ClientCredentials};
use authplane_testkit::{APP, APP_REDIRECT, APP_SECRET, VERIFIER};
use criterion::{Criterion, black_box};

mod common;

use common::bench_async;

/// The measured grants ask for no `openid`: they run without an ID token (its signature is
/// `cargo bench --bench crypto -- jose`, the code grant with one `scripts/bench-id-tokens`), so
/// the figures stay comparable with those before OpenID Connect.
const SCOPE: &str = "profile email";

fn authorize_request(challenge: &str) -> AuthorizeRequest {
    authorize_request_for(challenge, SCOPE)
}

fn authorize_request_for(challenge: &str, scope: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        response_type: Some("code".into()),
        client_id: Some(APP.into()),
        redirect_uri: Some(APP_REDIRECT.into()),
        scope: Some(scope.into()),
        state: Some("xyz".into()),
        code_challenge: Some(challenge.into()),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeRequest::default()
    }
}

fn basic() -> ClientCredentials {
    ClientCredentials::Basic {
        client_id: APP.into(),
        secret: APP_SECRET.into(),
    }
}

async fn code(state: &AppState, session: &str, challenge: &str) -> String {
    match state
        .authorize
        .authorize(authorize_request(challenge), Some(session), state.clock.now())
        .await
        .unwrap()
    {
        AuthorizeOutcome::Redirect(location) => common::code_of(&location),
        AuthorizeOutcome::Login { .. } | AuthorizeOutcome::Consent => panic!("the session was not accepted"),
    }
}

/// The token endpoint after parsing: client authentication, then the grant.
async fn token(state: &AppState, req: TokenRequest) -> authplane::service::tokens::TokenResponse {
    let client = state
        .clients
        .authenticate(basic(), None, state.clock.now())
        .await
        .unwrap();
    state.tokens.exchange(&client, req, state.clock.now()).await.unwrap()
}

fn code_request(code: String) -> TokenRequest {
    TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(APP_REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        ..TokenRequest::default()
    }
}

fn refresh_request(refresh: String) -> TokenRequest {
    TokenRequest {
        grant_type: Some("refresh_token".into()),
        refresh_token: Some(refresh),
        ..TokenRequest::default()
    }
}

fn service_benches(c: &mut Criterion) {
    let rt = common::runtime();
    let app = common::app(&rt);
    let state = app.state().clone();
    let challenge = authplane::crypto::pkce_challenge(VERIFIER);
    let session = rt.block_on(common::login(&app.router()));
    // The first token request pays the argon2 verification of the secret; every later one hits
    // the verification cache (invariant 5 of docs/reference.md).
    let first = rt.block_on(async {
        let code = code(&state, &session, &challenge).await;
        token(&state, code_request(code)).await
    });
    let mut refresh = first.refresh_token.clone().unwrap();
    // UserInfo needs an access token with `openid` (its ID token is made once, here).
    let access = rt.block_on(async {
        let req = authorize_request_for(&challenge, "openid profile email");
        let AuthorizeOutcome::Redirect(location) = state
            .authorize
            .authorize(req, Some(&session), state.clock.now())
            .await
            .unwrap()
        else {
            panic!("the session was not accepted")
        };
        token(&state, code_request(common::code_of(&location)))
            .await
            .access_token
    });

    let mut g = c.benchmark_group("service");
    bench_async(&mut g, &rt, "authorize", async || {
        let out = state
            .authorize
            .authorize(authorize_request(&challenge), Some(&session), state.clock.now())
            .await
            .unwrap();
        black_box(matches!(out, AuthorizeOutcome::Redirect(_)));
    });
    bench_async(&mut g, &rt, "client_authenticate_cached_secret", async || {
        black_box(
            state
                .clients
                .authenticate(basic(), None, state.clock.now())
                .await
                .unwrap(),
        );
    });
    g.bench_function("token_authorization_code", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A fresh code for each exchange, made outside the measured time.
                    let code = code(&state, &session, &challenge).await;
                    let start = Instant::now();
                    black_box(token(&state, code_request(code)).await);
                    total += start.elapsed();
                }
                total
            })
        })
    });
    // The same grant for a client whose ID tokens are EdDSA (the fixture's oidc-eddsa) with
    // `openid`: the difference to the one above is the ID token's cost at the service.
    let eddsa = || ClientCredentials::Basic {
        client_id: "oidc-eddsa".into(),
        secret: APP_SECRET.into(),
    };
    g.bench_function("token_authorization_code_id_token_eddsa", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut req = authorize_request_for(&challenge, "openid profile email");
                    req.client_id = Some("oidc-eddsa".into());
                    let now = state.clock.now();
                    let AuthorizeOutcome::Redirect(location) =
                        state.authorize.authorize(req, Some(&session), now).await.unwrap()
                    else {
                        panic!("the session was not accepted")
                    };
                    let code = common::code_of(&location);
                    let start = Instant::now();
                    let client = state.clients.authenticate(eddsa(), None, now).await.unwrap();
                    let res = state.tokens.exchange(&client, code_request(code), now).await.unwrap();
                    black_box(res.id_token.expect("an ID token"));
                    total += start.elapsed();
                }
                total
            })
        })
    });
    bench_async(&mut g, &rt, "token_refresh_token", async || {
        // Rotation: each refresh token is used once and its successor next.
        let res = token(&state, refresh_request(std::mem::take(&mut refresh))).await;
        refresh = res.refresh_token.unwrap();
    });
    bench_async(&mut g, &rt, "token_client_credentials", async || {
        let req = TokenRequest {
            grant_type: Some("client_credentials".into()),
            ..TokenRequest::default()
        };
        black_box(token(&state, req).await);
    });
    bench_async(&mut g, &rt, "userinfo_cache_hit", async || {
        black_box(
            state
                .tokens
                .userinfo(&access, Presented::BEARER_GET, state.clock.now())
                .await
                .unwrap(),
        );
    });
    let unknown = authplane::crypto::generate_token().value;
    bench_async(&mut g, &rt, "userinfo_unknown_token_negative_hit", async || {
        black_box(
            state
                .tokens
                .userinfo(&unknown, Presented::BEARER_GET, state.clock.now())
                .await
                .is_err(),
        );
    });
    g.finish();
}

common::bench_main!(20, service_benches);
