//! The resource-server example (`examples/resource_server/`, README "For resource-server
//! authors"), compiled in here as it is, its own router on 127.0.0.1:0 in front of a real
//! listening authplane: it takes jwt-app's tokens for its audience and nothing else, follows a key
//! rotation with one JWKS fetch, and made-up `kid`s make it fetch nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use authplane::config::Alg;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

// The example's `main` (and what only `main` uses) is dead code here.
#[allow(dead_code)]
#[path = "../../examples/resource_server/main.rs"]
mod example;

use example::auth::Verifier;

/// The example's router, serving on its own port, and its verifier (for the fetch count).
struct ResourceServer {
    base: String,
    verifier: Verifier,
    client: reqwest::Client,
}

impl ResourceServer {
    /// The example as `main` builds it, for tokens of `issuer` meant for [`API`].
    async fn start(issuer: &str) -> Self {
        let verifier = Verifier::new(issuer, API).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = example::router(verifier.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base,
            verifier,
            client: reqwest::Client::new(),
        }
    }

    async fn me(&self, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    fn fetches(&self) -> u64 {
        self.verifier.jwks_fetches()
    }
}

/// jwt-app's client_credentials access token with these parameters.
async fn jwt_token(app: &TestApp, form: &[(&str, &str)]) -> String {
    let mut all = vec![("grant_type", "client_credentials")];
    all.extend_from_slice(form);
    let res = app.token(Some((JWT_APP, APP_SECRET)), &all).await;
    assert_eq!(res.status(), StatusCode::OK);
    s(&json(res).await, "access_token")
}

fn part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// `token` with its header replaced by `header` and the payload and signature kept.
fn with_header(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64(header))
}

fn kid(token: &str) -> String {
    s(&part(token, 0), "kid")
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Asserts the answer to a refused token: 401 `invalid_token`, and nothing about why.
async fn assert_invalid_token(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#,
        "{what}"
    );
    assert_eq!(json(res).await, json!({"error": "invalid_token"}), "{what}");
}

#[tokio::test]
async fn the_example_takes_a_token_for_its_audience_and_refuses_every_other() {
    let app = spawn_issuer(|_| {}).await;
    let rs = ResourceServer::start(&app.base).await;

    let token = jwt_token(&app, &[("resource", API), ("scope", "profile")]).await;
    let res = rs.me(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = json(res).await;
    let claims = part(&token, 1);
    assert_eq!(
        (&seen["sub"], &seen["client_id"], &seen["scope"]),
        (&json!(JWT_APP), &json!(JWT_APP), &json!("profile"))
    );
    assert_eq!((&seen["jti"], &seen["exp"]), (&claims["jti"], &claims["exp"]));
    assert_eq!(rs.fetches(), 1, "the JWKS, once");

    // The same signing keys, other tokens. Minted ones are signed by the issuer's active key, so
    // each differs from a good token in the one respect named (the first is a good one).
    let keys = &app.state.keys;
    let mint = |typ: &'static str, change: Value| {
        let mut claims = claims.clone();
        claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
        for (k, v) in change.as_object().unwrap() {
            claims[k] = v.clone();
        }
        async move { keys.sign(Alg::ES256, typ, &claims).await.unwrap().token }
    };
    let control = mint("at+jwt", json!({})).await;
    assert_eq!(rs.me(&control).await.status(), StatusCode::OK, "a minted good token");
    let mint_typ = mint("application/at+jwt", json!({})).await;
    assert_eq!(rs.me(&mint_typ).await.status(), StatusCode::OK, "RFC 9068's media type");
    let both = jwt_token(&app, &[("resource", BILLING), ("resource", API), ("scope", "profile")]).await;
    assert!(part(&both, 1)["aud"].as_array().is_some_and(|a| a.len() == 2));
    assert_eq!(rs.me(&both).await.status(), StatusCode::OK, "an aud array naming it");

    let mut header = part(&token, 0);
    let mut wider = claims.clone();
    wider["scope"] = json!("openid profile email");
    let sig = token.rsplit('.').next().unwrap();
    header["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64(&header), token.split('.').nth(1).unwrap());
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(kid(&token));
    hs.typ = Some("at+jwt".into());
    let confused = jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(b"k")).unwrap();
    let refused = [
        (
            "no resource: aud is the issuer",
            jwt_token(&app, &[("scope", "profile")]).await,
        ),
        (
            "another resource server's",
            jwt_token(&app, &[("resource", BILLING), ("scope", "profile")]).await,
        ),
        (
            "tampered claims",
            format!("{}.{}.{sig}", token.split('.').next().unwrap(), b64(&wider)),
        ),
        ("alg none", unsigned),
        ("HS256 with an EC kid", confused),
        (
            "DPoP-bound",
            mint(
                "at+jwt",
                json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
            )
            .await,
        ),
        ("typ JWT (an ID token's)", mint("JWT", json!({})).await),
        (
            "expired",
            mint("at+jwt", json!({"exp": now() - 120, "iat": now() - 1000})).await,
        ),
        ("not yet valid", mint("at+jwt", json!({"nbf": now() + 120})).await),
        (
            "another issuer",
            mint("at+jwt", json!({"iss": "https://evil.example"})).await,
        ),
        ("no sub", mint("at+jwt", json!({"sub": null})).await),
        ("not a JWT", "opaque-token".to_owned()),
    ];
    for (what, token) in &refused {
        assert_invalid_token(rs.me(token).await, what).await;
    }

    // A good token without the route's scope: the handler's refusal, naming the scope.
    let email_only = jwt_token(&app, &[("resource", API), ("scope", "email")]).await;
    let res = rs.me(&email_only).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="profile""#
    );
    // No token at all (or another scheme): a bare challenge (RFC 6750 section 3.1).
    let res = rs.client.get(format!("{}/api/me", rs.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = rs
        .client
        .get(format!("{}/api/me", rs.base))
        .header("authorization", format!("DPoP {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    assert_eq!(rs.fetches(), 1, "every kid was known: no fetch after the first");
}

#[tokio::test]
async fn the_example_follows_a_key_rotation_with_one_fetch_and_made_up_kids_fetch_nothing() {
    let app = spawn_issuer(|_| {}).await;
    let rs = ResourceServer::start(&app.base).await;
    let form = [("resource", API), ("scope", "profile")];
    let old = jwt_token(&app, &form).await;
    assert_eq!(rs.me(&old).await.status(), StatusCode::OK);
    assert_eq!(rs.fetches(), 1);

    // A new key signs at once (no publish-ahead): the example's cached JWKS does not have it.
    app.state.keys.rotate_now(false).await.unwrap();
    let new = jwt_token(&app, &form).await;
    assert_ne!(kid(&new), kid(&old), "signed by the successor");
    assert!(
        app.jwks_kids().await.contains(&kid(&old)),
        "the old key is still published"
    );

    // Eight requests at once with the unknown kid: one fetch, shared by all.
    let answers = futures::future::join_all((0..8).map(|_| rs.me(&new))).await;
    for res in answers {
        assert_eq!(res.status(), StatusCode::OK, "the new key, from a refreshed JWKS");
    }
    assert_eq!(rs.fetches(), 2, "one refresh for the new kid");
    let res = rs.me(&old).await;
    assert_eq!(res.status(), StatusCode::OK, "the retired key verifies its tokens");
    assert_eq!(rs.fetches(), 2);

    // Made-up kids, one after another and at once: refused, and no fetch (the floor).
    let header = part(&new, 0);
    let garbage: Vec<String> = (0..40)
        .map(|i| {
            let mut h = header.clone();
            h["kid"] = json!(format!("made-up-{i}"));
            with_header(&new, &h)
        })
        .collect();
    for token in &garbage[..20] {
        assert_invalid_token(rs.me(token).await, "a made-up kid").await;
    }
    let answers = futures::future::join_all(garbage[20..].iter().map(|t| rs.me(t))).await;
    for res in answers {
        assert_invalid_token(res, "a made-up kid, concurrently").await;
    }
    assert_eq!(rs.fetches(), 2, "made-up kids fetch nothing within the floor");
    assert_eq!(rs.me(&new).await.status(), StatusCode::OK);
    assert_eq!(rs.me(&old).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_example_answers_503_while_the_jwks_cannot_be_fetched() {
    let app = spawn_issuer(|_| {}).await;
    // An issuer URL whose `/auth/jwks` is a 404.
    let rs = ResourceServer::start(&format!("{}/nowhere", app.base)).await;
    let token = jwt_token(&app, &[("resource", API), ("scope", "profile")]).await;
    for _ in 0..3 {
        let res = rs.me(&token).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
        assert!(!res.headers().contains_key("www-authenticate"), "not the token's fault");
    }
    assert_eq!(rs.fetches(), 1, "a failed fetch is not retried before the floor");
}
