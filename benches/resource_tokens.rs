//! Tokens for resource servers (issue 12), per algorithm:
//! - `dpop/verify/*`: `DpopVerifier::verify` of a proof for UserInfo (parse, header and `jwk`
//!   checks, key import, signature, claims, `ath`, thumbprint, the replay cache's insert);
//!   `dpop/signature/*` the bare signature check of the same proof (the part `openssl speed`'s
//!   verify column times). Proofs are signed before the clock starts; the replay cache is a new
//!   one every `POOL` proofs (each proof verifies once).
//! - `dpop/userinfo/*`: the whole UserInfo call of a DPoP-bound token with a new proof (token
//!   checks from the caches, proof, claims), as the handler calls it.
//! - `access_token/sign/*`: `KeyService::sign` of RFC 9068 claims (`typ` `at+jwt`).
//! - `access_token/client_credentials_jwt/*`: client authentication (cached secret) and the
//!   client_credentials grant of a JWT client (`TokenService::new_access_token`, no store write)
//!   with `--access-token-alg` each algorithm; `client_credentials_opaque` the same grant of an
//!   opaque client (a store write and a cache insert) for reference.
//!
//! `cargo bench --bench resource_tokens`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use authplane::domain::Timestamp;
use authplane::jose::{Alg, PrivateKey};
use authplane::service::dpop::{DpopVerifier, ProofFor};
use authplane::service::tokens::{Presented, TokenRequest};
use authplane::service::{AuthorizeOutcome, AuthorizeRequest, ClientCredentials};
use authplane::{AppState, Application};
use authplane_testkit::{APP, APP_REDIRECT, APP_SECRET, JWT_APP, VERIFIER};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, black_box};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod common;

use common::bench_async;

/// A client's DPoP key (the load tool's `dpop::ProofKey`, written again here).
struct ProofKey {
    key: PrivateKey,
    header: String,
}

impl ProofKey {
    fn new(alg: Alg) -> Self {
        let (key, _) = PrivateKey::generate(alg).unwrap();
        let jwk = key.public_key().jwk("bench");
        let header = serde_json::to_vec(&serde_json::json!({ "typ": "dpop+jwt", "alg": alg, "jwk": jwk })).unwrap();
        Self {
            key,
            header: URL_SAFE_NO_PAD.encode(header),
        }
    }

    fn proof(&self, htm: &str, htu: &str, access_token: Option<&str>, iat: i64) -> String {
        let mut claims = serde_json::json!({
            "jti": authplane::crypto::random_uuid().to_string(), "htm": htm, "htu": htu, "iat": iat,
        });
        if let Some(t) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())).into();
        }
        let signing_input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        let sig = self.key.sign(signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// Proofs signed before a measurement: RSA signatures take 0.28 ms each, so fewer of them.
fn pool_size(alg: Alg) -> usize {
    match alg {
        Alg::RS256 => 2_000,
        Alg::ES256 | Alg::EdDSA => 20_000,
    }
}

fn dpop_verify_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dpop");
    let url = url::Url::parse("http://127.0.0.1:8080/auth/userinfo").unwrap();
    let token = authplane::crypto::generate_token().value;
    let req = ProofFor {
        method: "GET",
        url: &url,
        access_token: Some(&token),
    };
    let now = Timestamp::from_millis(1_800_000_000_000);
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let key = ProofKey::new(alg);
        let pool: Vec<String> = (0..pool_size(alg))
            .map(|_| key.proof("GET", url.as_str(), Some(&token), now.secs()))
            .collect();
        assert!(
            DpopVerifier::new(Duration::from_secs(60), 1_000_000)
                .verify(&pool[0], &req, now)
                .is_ok()
        );
        g.bench_function(format!("verify/{alg}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(pool.len());
                    let verifier = DpopVerifier::new(Duration::from_secs(60), 1_000_000);
                    let start = Instant::now();
                    for p in &pool[..n] {
                        black_box(verifier.verify(black_box(p), &req, now).is_ok());
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
        // The signature alone: the signing input and signature of the first proof.
        let (input, sig) = pool[0].rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let public = key.key.public_key();
        assert!(public.verify(input.as_bytes(), &sig));
        g.bench_function(format!("signature/{alg}"), |b| {
            b.iter(|| public.verify(black_box(input.as_bytes()), black_box(&sig)))
        });
    }
    g.finish();
}

/// The application with JWT access tokens signed with `alg`.
fn app_with(rt: &tokio::runtime::Runtime, alg: Alg) -> Application {
    rt.block_on(Application::build_with(
        authplane_testkit::test_config(|s| s.access_token_alg = Some(alg)),
        authplane::Options::default(),
    ))
    .unwrap()
}

fn basic(client_id: &str) -> ClientCredentials {
    ClientCredentials::Basic {
        client_id: client_id.into(),
        secret: APP_SECRET.into(),
    }
}

fn cc_request() -> TokenRequest {
    TokenRequest {
        grant_type: Some("client_credentials".into()),
        ..TokenRequest::default()
    }
}

/// A DPoP-bound access token of alice for demo-app (scope openid): the code grant with a proof.
async fn dpop_user_token(state: &AppState, session: &str, key: &ProofKey) -> String {
    let challenge = authplane::crypto::pkce_challenge(VERIFIER);
    let req = AuthorizeRequest {
        response_type: Some("code".into()),
        client_id: Some(APP.into()),
        redirect_uri: Some(APP_REDIRECT.into()),
        scope: Some("openid profile email".into()),
        state: Some("xyz".into()),
        code_challenge: Some(challenge),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeRequest::default()
    };
    let now = state.clock.now();
    let AuthorizeOutcome::Redirect(location) = state.authorize.authorize(req, Some(session), now).await.unwrap() else {
        panic!("the session was not accepted")
    };
    let token_url = format!("{}/auth/token", state.tokens.issuer());
    let req = TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(common::code_of(&location)),
        redirect_uri: Some(APP_REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        dpop: Some(key.proof("POST", &token_url, None, now.secs())),
        ..TokenRequest::default()
    };
    let client = state.clients.authenticate(basic(APP), None, now).await.unwrap();
    let res = state.tokens.exchange(&client, req, now).await.unwrap();
    assert_eq!(res.token_type, "DPoP");
    res.access_token
}

/// RFC 9068 claims as `new_access_token` writes them for a client_credentials token.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    exp: i64,
    iat: i64,
    aud: &'a str,
    sub: &'a str,
    client_id: &'a str,
    jti: String,
    scope: &'a str,
}

/// How UserInfo sees a request with `Authorization: DPoP` and `proof`.
fn presented(proof: &str) -> Presented<'_> {
    Presented {
        dpop_scheme: true,
        proof: Some(proof),
        method: "GET",
    }
}

fn access_token_benches(c: &mut Criterion) {
    let rt = common::runtime();
    let mut g = c.benchmark_group("access_token");
    let mut userinfo = Vec::new();
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let app = app_with(&rt, alg);
        let state = app.state().clone();
        let issuer = state.tokens.issuer().to_owned();
        bench_async(&mut g, &rt, &format!("sign/{alg}"), async || {
            let now = state.clock.now().secs();
            let claims = AccessTokenClaims {
                iss: &issuer,
                exp: now + 900,
                iat: now,
                aud: "https://api.example.test",
                sub: JWT_APP,
                client_id: JWT_APP,
                jti: authplane::crypto::random_uuid().to_string(),
                scope: "openid profile email",
            };
            black_box(state.keys.sign(alg, "at+jwt", &claims).await.unwrap());
        });
        // The first authentication pays the argon2 verification of the secret; not measured.
        rt.block_on(async {
            let client = state
                .clients
                .authenticate(basic(JWT_APP), None, state.clock.now())
                .await;
            let res = state
                .tokens
                .exchange(&client.unwrap(), cc_request(), state.clock.now())
                .await;
            assert_eq!(res.unwrap().access_token.matches('.').count(), 2, "a JWT");
        });
        bench_async(&mut g, &rt, &format!("client_credentials_jwt/{alg}"), async || {
            let now = state.clock.now();
            let client = state.clients.authenticate(basic(JWT_APP), None, now).await.unwrap();
            black_box(state.tokens.exchange(&client, cc_request(), now).await.unwrap());
        });
        if alg == Alg::ES256 {
            rt.block_on(async {
                let client = state.clients.authenticate(basic(APP), None, state.clock.now()).await;
                let res = state
                    .tokens
                    .exchange(&client.unwrap(), cc_request(), state.clock.now())
                    .await;
                assert_eq!(res.unwrap().access_token.matches('.').count(), 0, "opaque");
            });
            bench_async(&mut g, &rt, "client_credentials_opaque", async || {
                let now = state.clock.now();
                let client = state.clients.authenticate(basic(APP), None, now).await.unwrap();
                black_box(state.tokens.exchange(&client, cc_request(), now).await.unwrap());
            });
            userinfo.push(app);
        }
    }
    g.finish();

    // UserInfo with a DPoP-bound token and a new proof per call, per proof algorithm.
    let mut g = c.benchmark_group("dpop");
    let app = userinfo.pop().unwrap();
    let state = app.state().clone();
    let session = rt.block_on(common::login(&app.router()));
    let userinfo_url = format!("{}/auth/userinfo", state.tokens.issuer());
    for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
        let key = ProofKey::new(alg);
        let token = rt.block_on(dpop_user_token(&state, &session, &key));
        let iat = state.clock.now().secs();
        let pool: Vec<String> = (0..pool_size(alg))
            .map(|_| key.proof("GET", &userinfo_url, Some(&token), iat))
            .collect();
        let checked = rt.block_on(state.tokens.userinfo(&token, presented(&pool[0]), state.clock.now()));
        assert!(checked.is_ok(), "the first proof is accepted");
        // Each proof once; the pool is signed again (outside the clock) when a run needs more.
        let mut next = 1;
        let mut pool = pool;
        g.bench_function(format!("userinfo/{alg}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if next == pool.len() {
                            let iat = state.clock.now().secs();
                            for p in &mut pool {
                                *p = key.proof("GET", &userinfo_url, Some(&token), iat);
                            }
                            next = 0;
                        }
                        let proof = &pool[next];
                        next += 1;
                        let start = Instant::now();
                        let res = state.tokens.userinfo(&token, presented(proof), state.clock.now()).await;
                        total += start.elapsed();
                        black_box(res.unwrap());
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

common::bench_main!(20, dpop_verify_benches, access_token_benches);
