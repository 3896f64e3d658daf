//! `private_key_jwt` (RFC 7523 section 2.2) over a real listening server, at the token,
//! introspection and revocation endpoints. The client's keys are made here (RustCrypto) and its
//! assertions signed by jsonwebtoken, outside the server's stack. Every bad assertion is
//! `invalid_client`, issues nothing and changes nothing.

use authplane_testkit::fixture::{TOML, config_from};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const KEY_APP: &str = "key-app";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A signing key of the test client, and the JWK its config entry holds.
struct ClientKey {
    alg: Algorithm,
    kid: Option<&'static str>,
    encoding: EncodingKey,
    jwk: Value,
}

fn es256_key(kid: &'static str) -> ClientKey {
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let encoding = EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes());
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    ClientKey {
        alg: Algorithm::ES256,
        kid: Some(kid),
        encoding,
        jwk,
    }
}

fn rs256_key() -> ClientKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let encoding = EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes());
    let jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap()).unwrap();
    ClientKey {
        alg: Algorithm::RS256,
        kid: None,
        encoding,
        jwk,
    }
}

fn ed25519_key() -> ClientKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    ClientKey {
        alg: Algorithm::EdDSA,
        kid: None,
        encoding: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())}),
    }
}

/// The fixture plus `key-app`, a confidential client that authenticates with `keys`; at most
/// `max_failures` failed authentications of a client from one address before 429.
async fn spawn_with_keys(keys: &[&ClientKey], max_failures: u32) -> TestApp {
    let jwks: Vec<String> = keys
        .iter()
        .map(|k| {
            let fields: Vec<String> = k
                .jwk
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, v)| format!("{name} = {v}"))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        })
        .collect();
    let text = format!(
        r#"{TOML}
[[clients]]
client_id = "{KEY_APP}"
token_endpoint_auth_method = "private_key_jwt"
jwks = {{ keys = [ {} ] }}
grant_types = ["client_credentials", "authorization_code"]
redirect_uris = ["http://127.0.0.1:9000/key-app"]
scopes = ["openid", "profile"]
"#,
        jwks.join(", ")
    );
    let cfg = config_from(&text, |s| s.client_max_failures = Some(max_failures)).unwrap();
    spawn_with(cfg, None).await
}

/// An assertion of `key-app` for `aud`, valid for a minute from the app's clock; `tweak` may
/// change its claims before signing.
fn assertion(app: &TestApp, key: &ClientKey, aud: Value, tweak: impl FnOnce(&mut Value)) -> String {
    let mut header = Header::new(key.alg);
    header.kid = key.kid.map(str::to_owned);
    let now = app.clock.now().secs();
    let mut claims = json!({
        "iss": KEY_APP,
        "sub": KEY_APP,
        "aud": aud,
        "exp": now + 60,
        "iat": now,
        "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
    });
    tweak(&mut claims);
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.client.post(app.url(path)).form(form).send().await.unwrap()
}

async fn cc_with(app: &TestApp, assertion: &str) -> reqwest::Response {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    post(app, "/auth/token", &form).await
}

#[tokio::test]
async fn a_client_authenticates_with_a_signed_assertion_at_every_endpoint() {
    let (es, ed, rs) = (es256_key("k1"), ed25519_key(), rs256_key());
    let app = spawn_with_keys(&[&es, &ed, &rs], 10).await;
    let iss = issuer(&app).await;
    let token_url = format!("{}/auth/token", iss.trim_end_matches('/'));
    let meta = discovery(&app).await;
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );

    // Any of its keys, either audience (or an array of just one of them).
    for (key, aud) in [
        (&es, json!(iss)),
        (&ed, json!(token_url)),
        (&rs, json!(iss)),
        (&es, json!([token_url])),
    ] {
        let res = cc_with(&app, &assertion(&app, key, aud.clone(), |_| {})).await;
        assert_eq!(res.status(), StatusCode::OK, "{:?} {aud}", key.alg);
    }
    let res = cc_with(&app, &assertion(&app, &es, json!(iss), |_| {})).await;
    let token = s(&json(res).await, "access_token");

    // Introspection and revocation take it too, client_id in the body or not.
    let a = assertion(&app, &es, json!(iss), |_| {});
    let form = [
        ("token", token.as_str()),
        ("client_id", KEY_APP),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    let res = post(&app, "/auth/introspect", &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["active"], true);
    let a = assertion(&app, &ed, json!(iss), |_| {});
    let form = [
        ("token", token.as_str()),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    assert_eq!(post(&app, "/auth/revoke", &form).await.status(), StatusCode::OK);
    assert_eq!(
        app.introspect(&token).await["active"],
        false,
        "revoked by its own client"
    );

    // And at the pushed authorization request endpoint.
    let a = assertion(&app, &rs, json!(iss), |_| {});
    let challenge = Pkce::fixed().challenge;
    let form = [
        ("response_type", "code"),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", a.as_str()),
    ];
    let res = post(&app, "/auth/par", &form).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let uri = s(&json(res).await, "request_uri");
    let session = app.login().await;
    let res = app
        .authorize(Some(&session), &[("client_id", KEY_APP), ("request_uri", &uri)])
        .await;
    assert!(param(&location_params(&res), "code").is_some());
}

#[tokio::test]
async fn a_bad_assertion_is_invalid_client_and_issues_nothing() {
    let (es, stranger) = (es256_key("k1"), es256_key("k1"));
    let app = spawn_with_keys(&[&es], 100).await;
    let iss = json!(issuer(&app).await);
    let now = app.clock.now().secs();
    let reused = assertion(&app, &es, iss.clone(), |_| {});
    assert_eq!(cc_with(&app, &reused).await.status(), StatusCode::OK);
    let before = tokens_issued(&app.metrics_text().await, None);

    let alg_none = {
        let good = assertion(&app, &es, iss.clone(), |_| {});
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
            parts[1]
        )
    };
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let c = json!({"iss": KEY_APP, "sub": KEY_APP, "aud": iss, "exp": now + 60, "jti": "h1"});
        jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(b"k")).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("a reused jti", reused),
        (
            "signed by a key not in the jwks",
            assertion(&app, &stranger, iss.clone(), |_| {}),
        ),
        (
            "another audience",
            assertion(&app, &es, json!("https://other.example"), |_| {}),
        ),
        (
            // rfc7523bis: an assertion that names other audiences too could come from one of them.
            "this server among other audiences",
            assertion(&app, &es, json!(["https://other.example", iss.clone()]), |_| {}),
        ),
        (
            "no audience",
            assertion(&app, &es, iss.clone(), |c| c["aud"] = Value::Null),
        ),
        (
            "expired",
            assertion(&app, &es, iss.clone(), |c| c["exp"] = json!(now - 1)),
        ),
        (
            "exp ten minutes ahead",
            assertion(&app, &es, iss.clone(), |c| c["exp"] = json!(now + 600)),
        ),
        ("no exp", assertion(&app, &es, iss.clone(), |c| c["exp"] = Value::Null)),
        (
            "issued in the future",
            assertion(&app, &es, iss.clone(), |c| c["iat"] = json!(now + 120)),
        ),
        ("no jti", assertion(&app, &es, iss.clone(), |c| c["jti"] = Value::Null)),
        (
            "iss another client",
            assertion(&app, &es, iss.clone(), |c| c["iss"] = json!(APP)),
        ),
        (
            "sub another client",
            assertion(&app, &es, iss.clone(), |c| c["sub"] = json!(APP)),
        ),
        ("alg none", alg_none),
        ("HS256 with the key's kid", hs256),
        ("not a JWT", "nope".into()),
    ];
    for (what, a) in &cases {
        let res = cc_with(&app, a).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(json(res).await["error"], "invalid_client", "{what}");
    }
    // Another assertion type, or a client that authenticates with a secret.
    let good = assertion(&app, &es, iss.clone(), |_| {});
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", "urn:example:other"),
        ("client_assertion", good.as_str()),
    ];
    assert_eq!(
        post(&app, "/auth/token", &form).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let secret_client = assertion(&app, &es, iss.clone(), |c| {
        c["iss"] = json!(APP);
        c["sub"] = json!(APP)
    });
    assert_eq!(cc_with(&app, &secret_client).await.status(), StatusCode::UNAUTHORIZED);
    // Two methods at once: invalid_request.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", KEY_APP),
        ("client_secret", "x"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", good.as_str()),
    ];
    let res = post(&app, "/auth/token", &form).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_request");
    assert_eq!(tokens_issued(&app.metrics_text().await, None), before, "nothing issued");
    // The good one was not spent by the refusals around it.
    assert_eq!(cc_with(&app, &good).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn failed_assertions_count_against_the_clients_limit() {
    let (es, stranger) = (es256_key("k1"), es256_key("k1"));
    let app = spawn_with_keys(&[&es], 3).await;
    let iss = json!(issuer(&app).await);
    for _ in 0..3 {
        let res = cc_with(&app, &assertion(&app, &stranger, iss.clone(), |_| {})).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Over the limit, even a good assertion is not looked at (429, Retry-After).
    let res = cc_with(&app, &assertion(&app, &es, iss.clone(), |_| {})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_config_with_private_key_jwt_needs_public_keys() {
    let client = |extra: &str| {
        format!(
            "{TOML}\n[[clients]]\nclient_id = \"k\"\ngrant_types = [\"client_credentials\"]\nscopes = [\"profile\"]\n{extra}\n"
        )
    };
    let es = es256_key("k1");
    let x = es.jwk["x"].as_str().unwrap();
    let y = es.jwk["y"].as_str().unwrap();
    for (what, extra) in [
        ("no jwks", "token_endpoint_auth_method = \"private_key_jwt\"".to_owned()),
        (
            "empty jwks",
            "token_endpoint_auth_method = \"private_key_jwt\"\njwks = { keys = [] }".to_owned(),
        ),
        (
            "a private key",
            format!(
                "jwks = {{ keys = [ {{ kty = \"EC\", crv = \"P-256\", x = \"{x}\", y = \"{y}\", d = \"{x}\" }} ] }}"
            ),
        ),
        (
            "a symmetric key",
            "jwks = { keys = [ { kty = \"oct\", k = \"c2VjcmV0\" } ] }".to_owned(),
        ),
        (
            "a 1024-bit RSA key",
            format!(
                "jwks = {{ keys = [ {{ kty = \"RSA\", e = \"AQAB\", n = \"{}\" }} ] }}",
                "A".repeat(171)
            ),
        ),
        (
            "a P-384 key",
            format!("jwks = {{ keys = [ {{ kty = \"EC\", crv = \"P-384\", x = \"{x}\", y = \"{y}\" }} ] }}"),
        ),
    ] {
        let err = config_from(&client(&extra), |_| {})
            .err()
            .unwrap_or_else(|| panic!("{what} accepted"));
        assert!(err.to_string().contains("client \"k\""), "{what}: {err}");
    }
    let ok = format!("jwks = {{ keys = [ {{ kty = \"EC\", crv = \"P-256\", x = \"{x}\", y = \"{y}\" }} ] }}");
    let cfg = config_from(&client(&ok), |_| {}).unwrap();
    let k = cfg.clients.iter().find(|c| &*c.client_id == "k").unwrap();
    assert_eq!(k.auth_method.as_str(), "private_key_jwt", "implied by jwks");
}

#[tokio::test]
async fn a_client_registered_with_private_key_jwt_authenticates_with_its_keys() {
    use authplane_testkit::fixture::{ADMIN, ADMIN_SECRET};
    let es = es256_key("reg-1");
    let app = spawn_with_keys(&[&es], 10).await;
    let res = app
        .token(
            Some((ADMIN, ADMIN_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await;
    let admin = s(&json(res).await, "access_token");
    let register = |metadata: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            app.client
                .post(app.url("/auth/register"))
                .bearer_auth(admin)
                .json(&metadata)
                .send()
                .await
                .unwrap()
        }
    };
    let mut with_private = es.jwk.clone();
    with_private["d"] = with_private["x"].clone();
    for (what, metadata) in [
        (
            "no keys",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
        ),
        (
            "a private key",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
                   "jwks": {"keys": [with_private]}}),
        ),
        (
            "a jwks_uri",
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
                   "jwks_uri": "https://client.example/jwks"}),
        ),
    ] {
        let res = register(metadata).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(json(res).await["error"], "invalid_client_metadata", "{what}");
    }
    let res = register(json!({
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [es.jwk]},
        "scope": "profile",
    }))
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let reg = json(res).await;
    assert!(reg.get("client_secret").is_none(), "no secret for a key client: {reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(reg["jwks"]["keys"][0]["x"], es.jwk["x"]);
    let id = s(&reg, "client_id");
    let iss = json!(issuer(&app).await);
    let a = assertion(&app, &es, iss, |c| {
        c["iss"] = json!(id);
        c["sub"] = json!(id);
    });
    let res = cc_with(&app, &a).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.introspect(&s(&json(res).await, "access_token")).await["client_id"],
        id.as_str()
    );
}

#[tokio::test]
async fn an_assertion_is_used_once_across_nodes() {
    use authplane_testkit::fixture::{ADMIN, ADMIN_SECRET};
    let db = crate::pg::TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let es = es256_key("node-key");
    let res = a
        .token(
            Some((ADMIN, ADMIN_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await;
    let admin = s(&json(res).await, "access_token");
    let res = a
        .client
        .post(a.url("/auth/register"))
        .bearer_auth(&admin)
        .json(&json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [es.jwk]},
            "scope": "profile",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = s(&json(res).await, "client_id");
    let iss = json!(issuer(&a).await);
    let once = assertion(&a, &es, iss, |c| {
        c["iss"] = json!(id);
        c["sub"] = json!(id);
    });
    assert_eq!(cc_with(&a, &once).await.status(), StatusCode::OK);
    let res = cc_with(&b, &once).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "replayed to the other node");
    assert_eq!(json(res).await["error"], "invalid_client");
}
