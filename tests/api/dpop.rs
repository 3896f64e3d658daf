//! DPoP (RFC 9449) over a real listening server. The proofs are made outside the server's stack:
//! keys from RustCrypto (p256, ed25519-dalek, rsa), signed by jsonwebtoken, thumbprints from
//! jsonwebtoken's RFC 7638 code (EC, RSA) or written out here (Ed25519). Every bad proof is the
//! exact error of the contract, issues nothing and changes nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, OctetKeyPairParameters, OctetKeyPairType, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const DPOP_CLIENT: (&str, &str) = (DPOP_APP, APP_SECRET);
const JWT_CLIENT: (&str, &str) = (JWT_APP, APP_SECRET);

/// A client's DPoP key pair, and its thumbprint as the outside library computes it.
pub(crate) struct DpopKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    jkt: String,
}

impl DpopKey {
    pub(crate) fn es256() -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let encoding = EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes());
        Self::with_jwk(Algorithm::ES256, encoding)
    }

    fn rs256() -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let encoding = EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes());
        Self::with_jwk(Algorithm::RS256, encoding)
    }

    fn with_jwk(alg: Algorithm, encoding: EncodingKey) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        let jkt = jwk.thumbprint(ThumbprintHash::SHA256);
        Self {
            alg,
            encoding,
            jwk,
            jkt,
        }
    }

    /// Ed25519: jsonwebtoken builds no OKP JWK from a key (and its OKP thumbprint is not RFC
    /// 7638's), so both are written out here from RFC 8037 and RFC 7638.
    fn ed25519() -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let encoding = EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes());
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        Self {
            alg: Algorithm::EdDSA,
            encoding,
            jwk: Jwk {
                common: CommonParameters::default(),
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x,
                }),
            },
            jkt: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
        }
    }

    /// A proof for `htm htu` at the app's clock, with `ath` for `token`.
    pub(crate) fn proof(&self, app: &TestApp, htm: &str, path: &str, token: Option<&str>) -> String {
        self.proof_with(app, htm, &app.url(path), token, |_, _| {})
    }

    /// A proof whose header and claims `tweak` may change before signing.
    fn proof_with(
        &self,
        app: &TestApp,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        tweak: impl FnOnce(&mut Header, &mut Value),
    ) -> String {
        let mut header = Header::new(self.alg);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            "htm": htm,
            "htu": htu,
            "iat": app.clock.now().secs(),
        });
        if let Some(t) = token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        }
        tweak(&mut header, &mut claims);
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

async fn token_with_proof(
    app: &TestApp,
    client: Option<(&str, &str)>,
    proof: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app.client.post(app.url("/auth/token")).form(form);
    if let Some((id, secret)) = client {
        req = req.basic_auth(id, Some(secret));
    }
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

async fn userinfo_dpop(app: &TestApp, scheme: &str, token: &str, proof: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url("/auth/userinfo"))
        .header("authorization", format!("{scheme} {token}"));
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

fn challenge(res: &reqwest::Response) -> String {
    res.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// demo-spa's code (PKCE as the test kit makes it), `extra` authorize parameters added.
async fn spa_code(app: &TestApp, extra: &[(&str, &str)]) -> String {
    let session = app.login().await;
    let pkce = Pkce::fixed();
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", SPA),
        ("redirect_uri", SPA_REDIRECT),
        ("scope", "openid profile"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    query.extend_from_slice(extra);
    let res = app.authorize(Some(&session), &query).await;
    param(&location_params(&res), "code").expect("a code")
}

fn spa_exchange(code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".into()),
        ("client_id", SPA.into()),
        ("code", code.to_owned()),
        ("redirect_uri", SPA_REDIRECT.into()),
        ("code_verifier", VERIFIER.into()),
    ]
}

fn pairs<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_proof_binds_the_tokens_of_every_grant_to_its_key_for_each_algorithm() {
    let app = spawn_issuer(|_| {}).await;
    let meta = discovery(&app).await;
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256"])
    );
    for key in [DpopKey::es256(), DpopKey::ed25519(), DpopKey::rs256()] {
        // client_credentials, JWT: cnf.jkt in the token and in introspection.
        let proof = key.proof(&app, "POST", "/auth/token", None);
        let res = token_with_proof(
            &app,
            Some(JWT_CLIENT),
            Some(&proof),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", key.alg);
        let t = json(res).await;
        assert_eq!(t["token_type"], "DPoP");
        let access = s(&t, "access_token");
        assert_eq!(claims_of(&access)["cnf"], json!({"jkt": key.jkt}), "{:?}", key.alg);
        assert_eq!(app.introspect(&access).await["cnf"], json!({"jkt": key.jkt}));

        // A public client's code flow: access and refresh token bound.
        let code = spa_code(&app, &[]).await;
        let proof = key.proof(&app, "POST", "/auth/token", None);
        let res = token_with_proof(&app, None, Some(&proof), &pairs(&spa_exchange(&code))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let t = json(res).await;
        assert_eq!(t["token_type"], "DPoP");
        let access = s(&t, "access_token");
        assert_eq!(app.introspect(&access).await["cnf"]["jkt"], key.jkt.as_str());

        // UserInfo: the DPoP scheme and a proof of the key, with ath.
        let proof = key.proof(&app, "GET", "/auth/userinfo", Some(&access));
        let res = userinfo_dpop(&app, "DPoP", &access, Some(&proof)).await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", key.alg);
        assert_eq!(json(res).await["sub"], ALICE_SUB);

        // The refresh: a proof of the same key, and the new tokens stay bound.
        let proof = key.proof(&app, "POST", "/auth/token", None);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", SPA),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ];
        let res = token_with_proof(&app, None, Some(&proof), &form).await;
        assert_eq!(res.status(), StatusCode::OK);
        let t = json(res).await;
        assert_eq!(t["token_type"], "DPoP");
        assert_eq!(
            app.introspect(&s(&t, "access_token")).await["cnf"]["jkt"],
            key.jkt.as_str()
        );
    }
    // Without a proof nothing is bound: Bearer as before.
    let t = app.app_tokens("openid").await;
    assert_eq!(t["token_type"], "Bearer");
    assert!(app.introspect(&s(&t, "access_token")).await.get("cnf").is_none());
}

#[tokio::test]
async fn a_bound_token_without_the_proof_of_its_key_is_refused_at_userinfo() {
    let app = spawn_issuer(|_| {}).await;
    let (key, other) = (DpopKey::es256(), DpopKey::ed25519());
    let code = spa_code(&app, &[]).await;
    let proof = key.proof(&app, "POST", "/auth/token", None);
    let t = json(token_with_proof(&app, None, Some(&proof), &pairs(&spa_exchange(&code))).await).await;
    let access = s(&t, "access_token");

    // invalid_token: sent as Bearer, or without a proof, or with a proof of another key.
    let cases = [
        ("as a bearer token", "Bearer", None),
        ("without a proof", "DPoP", None),
        (
            "with another key's proof",
            "DPoP",
            Some(other.proof(&app, "GET", "/auth/userinfo", Some(&access))),
        ),
    ];
    for (what, scheme, proof) in cases {
        let res = userinfo_dpop(&app, scheme, &access, proof.as_deref()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            challenge(&res).contains(r#"error="invalid_token""#),
            "{what}: {}",
            challenge(&res)
        );
    }
    let res = app.userinfo(&access).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // invalid_dpop_proof (401): a proof of the right key that is wrong in itself.
    let url = app.url("/auth/userinfo");
    let bad = [
        ("no ath", key.proof(&app, "GET", "/auth/userinfo", None)),
        (
            "ath of another token",
            key.proof(&app, "GET", "/auth/userinfo", Some("other")),
        ),
        (
            "another method",
            key.proof(&app, "POST", "/auth/userinfo", Some(&access)),
        ),
        ("another URL", key.proof(&app, "GET", "/auth/token", Some(&access))),
        (
            "stale",
            key.proof_with(&app, "GET", &url, Some(&access), |_, c| {
                c["iat"] = json!(c["iat"].as_i64().unwrap() - 61)
            }),
        ),
    ];
    for (what, proof) in bad {
        let res = userinfo_dpop(&app, "DPoP", &access, Some(&proof)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert!(challenge(&res).starts_with("DPoP "), "{what}");
        assert_eq!(json(res).await["error"], "invalid_dpop_proof", "{what}");
    }
    // A replayed proof: once accepted, never again.
    let proof = key.proof(&app, "GET", "/auth/userinfo", Some(&access));
    assert_eq!(
        userinfo_dpop(&app, "DPoP", &access, Some(&proof)).await.status(),
        StatusCode::OK
    );
    let res = userinfo_dpop(&app, "DPoP", &access, Some(&proof)).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_dpop_proof".into())
    );
    // An unbound token sent with the DPoP scheme is not a DPoP token.
    let bearer = s(&app.app_tokens("openid").await, "access_token");
    let proof = key.proof(&app, "GET", "/auth/userinfo", Some(&bearer));
    let res = userinfo_dpop(&app, "DPoP", &bearer, Some(&proof)).await;
    assert_eq!(error_of(res).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
}

#[tokio::test]
async fn bad_proofs_at_the_token_endpoint_are_invalid_dpop_proof_and_issue_nothing() {
    let app = spawn_issuer(|_| {}).await;
    let (key, other) = (DpopKey::es256(), DpopKey::es256());
    let url = app.url("/auth/token");
    let replayed = key.proof(&app, "POST", "/auth/token", None);
    let cc = [("grant_type", "client_credentials")];
    assert_eq!(
        token_with_proof(&app, Some(JWT_CLIENT), Some(&replayed), &cc)
            .await
            .status(),
        StatusCode::OK
    );
    let before = tokens_issued(&app.metrics_text().await, None);

    let signed_by_other = {
        // The header names `key`, the signature is `other`'s.
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(key.jwk.clone());
        let claims = json!({"jti": "x1", "htm": "POST", "htu": url, "iat": app.clock.now().secs()});
        jsonwebtoken::encode(&header, &claims, &other.encoding).unwrap()
    };
    let alg_none = {
        let good = key.proof(&app, "POST", "/auth/token", None);
        let parts: Vec<&str> = good.split('.').collect();
        let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        header["alg"] = json!("none");
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), parts[1])
    };
    let with_private_key = {
        let good = key.proof(&app, "POST", "/auth/token", None);
        let parts: Vec<&str> = good.split('.').collect();
        let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        header["jwk"]["d"] = json!("AAAA");
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1],
            parts[2]
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("signed by another key", signed_by_other),
        ("replayed", replayed),
        ("alg none", alg_none),
        ("a private key in the jwk", with_private_key),
        ("another URL", key.proof(&app, "POST", "/auth/userinfo", None)),
        ("another method", key.proof(&app, "GET", "/auth/token", None)),
        (
            "stale iat",
            key.proof_with(&app, "POST", &url, None, |_, c| {
                c["iat"] = json!(c["iat"].as_i64().unwrap() - 61)
            }),
        ),
        (
            "future iat",
            key.proof_with(&app, "POST", &url, None, |_, c| {
                c["iat"] = json!(c["iat"].as_i64().unwrap() + 61)
            }),
        ),
        (
            "no iat",
            key.proof_with(&app, "POST", &url, None, |_, c| c["iat"] = Value::Null),
        ),
        (
            "no jti",
            key.proof_with(&app, "POST", &url, None, |_, c| c["jti"] = Value::Null),
        ),
        (
            "typ JWT",
            key.proof_with(&app, "POST", &url, None, |h, _| h.typ = Some("JWT".into())),
        ),
        ("HS256", {
            let mut h = Header::new(Algorithm::HS256);
            h.typ = Some("dpop+jwt".into());
            h.jwk = Some(key.jwk.clone());
            let c = json!({"jti": "x2", "htm": "POST", "htu": url, "iat": app.clock.now().secs()});
            jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(b"k")).unwrap()
        }),
        ("not a JWT", "garbage".into()),
    ];
    for (what, proof) in &cases {
        let res = token_with_proof(&app, Some(JWT_CLIENT), Some(proof), &cc).await;
        assert_eq!(
            error_of(res).await,
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into()),
            "{what}"
        );
    }
    // Two proofs at once.
    let res = app
        .client
        .post(&url)
        .basic_auth(JWT_APP, Some(APP_SECRET))
        .header("DPoP", key.proof(&app, "POST", "/auth/token", None))
        .header("DPoP", key.proof(&app, "POST", "/auth/token", None))
        .form(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
    );
    // A client that must use DPoP gets nothing without a proof.
    let res = token_with_proof(&app, Some(DPOP_CLIENT), None, &cc).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
    );
    assert_eq!(tokens_issued(&app.metrics_text().await, None), before, "nothing issued");
    let proof = key.proof(&app, "POST", "/auth/token", None);
    let res = token_with_proof(&app, Some(DPOP_CLIENT), Some(&proof), &cc).await;
    assert_eq!(json(res).await["token_type"], "DPoP");
}

#[tokio::test]
async fn a_public_clients_bound_refresh_token_needs_the_same_key_and_survives_refusals() {
    let app = spawn_issuer(|_| {}).await;
    let (key, other) = (DpopKey::ed25519(), DpopKey::es256());
    let code = spa_code(&app, &[]).await;
    let proof = key.proof(&app, "POST", "/auth/token", None);
    let t = json(token_with_proof(&app, None, Some(&proof), &pairs(&spa_exchange(&code))).await).await;
    let refresh = s(&t, "refresh_token");
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", SPA),
        ("refresh_token", refresh.as_str()),
    ];
    for (what, proof) in [
        ("no proof", None),
        ("another key", Some(other.proof(&app, "POST", "/auth/token", None))),
    ] {
        let res = token_with_proof(&app, None, proof.as_deref(), &form).await;
        assert_eq!(
            error_of(res).await,
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into()),
            "{what}"
        );
    }
    // The refused attempts changed nothing: the token still refreshes, once.
    let proof = key.proof(&app, "POST", "/auth/token", None);
    assert_eq!(
        token_with_proof(&app, None, Some(&proof), &form).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn dpop_jkt_at_authorize_binds_the_code_to_that_key() {
    let app = spawn_issuer(|_| {}).await;
    let (key, other) = (DpopKey::es256(), DpopKey::rs256());
    // Malformed: back to the client.
    let session = app.login().await;
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", SPA),
                ("code_challenge", &Pkce::fixed().challenge),
                ("code_challenge_method", "S256"),
                ("dpop_jkt", "not-a-thumbprint"),
            ],
        )
        .await;
    assert_eq!(
        param(&location_params(&res), "error").as_deref(),
        Some("invalid_request")
    );

    let before = tokens_issued(&app.metrics_text().await, None);
    // Refused, and the code stays its client's: whoever holds a stolen code cannot burn it by
    // sending no proof or a proof of their own key.
    let code = spa_code(&app, &[("dpop_jkt", &key.jkt)]).await;
    for (what, proof) in [
        ("no proof", None),
        ("another key", Some(other.proof(&app, "POST", "/auth/token", None))),
    ] {
        let res = token_with_proof(&app, None, proof.as_deref(), &pairs(&spa_exchange(&code))).await;
        assert_eq!(
            error_of(res).await,
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into()),
            "{what}"
        );
    }
    assert_eq!(tokens_issued(&app.metrics_text().await, None), before);
    let proof = key.proof(&app, "POST", "/auth/token", None);
    let res = token_with_proof(&app, None, Some(&proof), &pairs(&spa_exchange(&code))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["token_type"], "DPoP");
}

/// A DPoP-bound token is never a bearer token, at the admin API either.
#[tokio::test]
async fn a_bound_admin_token_is_refused_as_a_bearer_token() {
    use authplane_testkit::fixture::{ADMIN, ADMIN_SECRET};
    let app = spawn_issuer(|_| {}).await;
    let key = DpopKey::es256();
    let form = [("grant_type", "client_credentials"), ("scope", "admin")];
    let proof = key.proof(&app, "POST", "/auth/token", None);
    let bound = json(token_with_proof(&app, Some((ADMIN, ADMIN_SECRET)), Some(&proof), &form).await).await;
    assert_eq!(bound["token_type"], "DPoP");
    let unbound = json(token_with_proof(&app, Some((ADMIN, ADMIN_SECRET)), None, &form).await).await;
    for (token, status) in [(&bound, StatusCode::UNAUTHORIZED), (&unbound, StatusCode::OK)] {
        let res = app
            .client
            .get(app.url("/admin/users"))
            .bearer_auth(s(token, "access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{}", token["token_type"]);
    }
}

#[tokio::test]
async fn the_replay_cache_holds_its_bound_and_health_counts_what_it_dropped_early() {
    let app = spawn_issuer(|s| s.dpop_replay_capacity = Some(3)).await;
    let key = DpopKey::ed25519();
    let cc = [("grant_type", "client_credentials")];
    let proofs: Vec<String> = (0..5).map(|_| key.proof(&app, "POST", "/auth/token", None)).collect();
    for p in &proofs {
        let res = token_with_proof(&app, Some(JWT_CLIENT), Some(p), &cc).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The newest is remembered at the bound: its replay is refused.
    let res = token_with_proof(&app, Some(JWT_CLIENT), Some(&proofs[4]), &cc).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
    );
    let health = json(app.client.get(app.url("/debug/health")).send().await.unwrap()).await;
    let replay = &health["dpop_replay"];
    assert_eq!(replay["capacity"], 3, "{health}");
    assert_eq!(replay["window_seconds"], 120, "{health}");
    assert!(replay["entries"].as_u64().unwrap() <= 3, "{health}");
    // Five jtis in a cache of three, all inside their window: two dropped early, and said so.
    assert_eq!(replay["evicted_unexpired"], 2, "{health}");
}
