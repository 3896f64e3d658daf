//! Credential generation and hashing: the per-request cryptography of the hot paths; and the
//! signatures of ID tokens per algorithm (a bare signature and verification of a 32-byte
//! message, comparable with `openssl speed rsa2048 ecdsap256 ed25519`, and a whole ID token).
//! `cargo bench --bench crypto`

use authplane::crypto;
use authplane::domain::{CodeChallenge, CodeVerifier};
use authplane::jose::{self, Alg, PrivateKey};
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

fn signature_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("jose");
    let message = [7u8; 32];
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:8080", "sub": "u-alice", "aud": "demo-app", "azp": "demo-app",
        "exp": 1_800_000_000, "iat": 1_799_996_400, "auth_time": 1_799_996_000,
        "nonce": "n-0S6_WzA2Mj", "at_hash": "GFxtY7-EgYplRMPbxpCE-A", "sid": "q2Fz8x0xgS6cJj1mQGk7CA",
    });
    for alg in Alg::ALL {
        let Ok((key, _)) = PrivateKey::generate(alg) else {
            return;
        };
        let public = key.public_key();
        let Ok(sig) = key.sign(&message) else {
            return;
        };
        g.bench_function(format!("sign/{alg}"), |b| b.iter(|| key.sign(black_box(&message))));
        g.bench_function(format!("verify/{alg}"), |b| {
            b.iter(|| public.verify(black_box(&message), black_box(&sig)))
        });
        g.bench_function(format!("id_token/{alg}"), |b| {
            b.iter(|| jose::sign_jwt(&key, "kid", "JWT", black_box(&claims)))
        });
    }
    g.finish();
}

common::bench_main!(30, crypto_benches, signature_benches);
