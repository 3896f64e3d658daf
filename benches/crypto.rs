//! Credential generation and hashing: the per-request cryptography of the hot paths.
//! `cargo bench --bench crypto`

use authplane::crypto;
use authplane::domain::{CodeChallenge, CodeVerifier};
use authplane_testkit::{APP, APP_SECRET, VERIFIER};
use criterion::{Criterion, black_box};

mod common;

fn crypto_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("crypto");
    // A 256-bit token from the OS CSPRNG, base64url, and its SHA-256 (every code, token, session).
    g.bench_function("generate_token", |b| b.iter(crypto::generate_token));
    let token = crypto::generate_token().value;
    // The hash of a presented credential (every cache or store lookup).
    g.bench_function("hash_token", |b| b.iter(|| crypto::hash_token(black_box(&token))));
    // The key of a verified client secret (every authenticated token request).
    g.bench_function("client_secret_key", |b| {
        b.iter(|| crypto::client_secret_key(black_box(APP), black_box(APP_SECRET)))
    });
    let Some(verifier) = CodeVerifier::parse(VERIFIER) else {
        return;
    };
    let Some(challenge) = CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") else {
        return;
    };
    // RFC 7636 S256: SHA-256, base64url, constant-time compare (every code exchange).
    g.bench_function("verify_pkce_s256", |b| {
        b.iter(|| crypto::verify_pkce_s256(black_box(&verifier), black_box(&challenge)))
    });
    g.finish();
}

common::bench_main!(30, crypto_benches);
