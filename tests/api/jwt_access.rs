//! JWT access tokens (RFC 9068) and resource indicators (RFC 8707), over a real listening server:
//! an outside JOSE library (jsonwebtoken, RustCrypto, not the server's aws-lc) verifies the
//! tokens against the JWKS as a resource server would; UserInfo, introspection and revocation
//! take them like opaque ones; a revocation holds at once, on every node; a client_credentials
//! JWT is issued without a store write; `resource` outside what the client (or the grant) may
//! name is `invalid_target` and changes nothing.

use std::time::{Duration, Instant};

use authplane::config::Alg;
use authplane::crypto::hash_token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::pg::TestDb;

const JWT_CLIENT: (&str, &str) = (JWT_APP, APP_SECRET);

/// What a resource server does with a JWT access token: the JWKS key its `kid` names, that
/// key's `alg`, `typ` `at+jwt`, the issuer and its own identifier in `aud` (jsonwebtoken's
/// checks). Expiry is the manual clock's business, so it is checked by the caller.
async fn verify_as_resource_server(app: &TestApp, jwt: &str, audience: &str) -> (jsonwebtoken::Header, Value) {
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .client
        .get(app.url("/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 section 2.1");
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_exp = false;
    v.set_required_spec_claims(&["iss", "sub", "aud", "exp"]);
    v.set_issuer(&[issuer(app).await]);
    v.set_audience(&[audience]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .unwrap_or_else(|e| panic!("{e}"))
        .claims;
    (header, claims)
}

async fn client_credentials(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    let mut all = vec![("grant_type", "client_credentials")];
    all.extend_from_slice(form);
    app.token(Some(JWT_CLIENT), &all).await
}

/// A code for jwt-app (PKCE as the test kit makes it) with `extra` authorize parameters.
async fn authorize_jwt_app(app: &TestApp, session: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let pkce = Pkce::fixed();
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", JWT_APP),
        ("redirect_uri", APP_REDIRECT),
        ("scope", "openid profile"),
        ("state", "st"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    query.extend_from_slice(extra);
    app.authorize(Some(session), &query).await
}

/// jwt-app's tokens from the code flow, `resource`s at authorize and at the token endpoint.
async fn code_flow(app: &TestApp, at_authorize: &[&str], at_token: &[&str]) -> reqwest::Response {
    let session = app.login().await;
    let extra: Vec<_> = at_authorize.iter().map(|r| ("resource", *r)).collect();
    let res = authorize_jwt_app(app, &session, &extra).await;
    let code = param(&location_params(&res), "code").expect("a code");
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", APP_REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    form.extend(at_token.iter().map(|r| ("resource", *r)));
    app.token(Some(JWT_CLIENT), &form).await
}

#[tokio::test]
async fn jwt_access_tokens_carry_rfc_9068_claims_an_outside_library_verifies_for_each_algorithm() {
    for alg in [Alg::RS256, Alg::ES256, Alg::EdDSA] {
        let app = spawn_issuer(|s| s.access_token_alg = Some(alg)).await;
        let issuer = issuer(&app).await;

        // client_credentials: the client is the subject; no resource, so the issuer is the audience.
        let res = client_credentials(&app, &[("scope", "profile")]).await;
        assert_eq!(res.status(), StatusCode::OK);
        let t = json(res).await;
        assert_eq!(
            (t["token_type"].as_str(), t["expires_in"].as_u64()),
            (Some("Bearer"), Some(900))
        );
        let cc = s(&t, "access_token");
        let (header, c) = verify_as_resource_server(&app, &cc, &issuer).await;
        assert_eq!(format!("{:?}", header.alg), alg.as_str(), "--access-token-alg");
        assert_eq!(
            (c["sub"].as_str(), c["client_id"].as_str()),
            (Some(JWT_APP), Some(JWT_APP))
        );
        assert_eq!(
            (c["aud"].as_str(), c["scope"].as_str()),
            (Some(issuer.as_str()), Some("profile"))
        );
        // --access-token-ttl, the end rounded up to a whole second.
        let lifetime = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
        assert!((900..=901).contains(&lifetime), "{c}");
        assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 32), "{c}");
        assert!(c.get("auth_time").is_none(), "no user, no auth_time");

        // The code flow for a resource server: the user is the subject, with auth_time.
        let res = code_flow(&app, &[API], &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
        let t = json(res).await;
        let user = s(&t, "access_token");
        let (_, c) = verify_as_resource_server(&app, &user, API).await;
        assert_eq!(
            (c["sub"].as_str(), c["client_id"].as_str()),
            (Some(ALICE_SUB), Some(JWT_APP))
        );
        assert_eq!(
            (c["aud"].as_str(), c["scope"].as_str()),
            (Some(API), Some("openid profile"))
        );
        assert!(c["auth_time"].as_i64().is_some(), "{c}");
        assert_ne!(c["jti"], verify_as_resource_server(&app, &cc, &issuer).await.1["jti"]);

        // Introspection takes both, with their audiences.
        let i = app.introspect(&cc).await;
        assert_eq!(
            (i["active"].as_bool(), i["aud"].as_str()),
            (Some(true), Some(issuer.as_str()))
        );
        assert_eq!(
            (i["sub"].as_str(), i["client_id"].as_str()),
            (Some(JWT_APP), Some(JWT_APP))
        );
        let i = app.introspect(&user).await;
        assert_eq!((i["active"].as_bool(), i["aud"].as_str()), (Some(true), Some(API)));
        assert_eq!(i["sub"], ALICE_SUB);
    }
}

/// An app whose caches forget at once: every lookup goes to the store (and to the signature).
async fn spawn_forgetful() -> TestApp {
    spawn_with(test_config(|s| s.cache_ttl = Some("1ms".parse().unwrap())), None).await
}

#[tokio::test]
async fn a_client_credentials_jwt_is_issued_without_a_store_write_and_revoked_with_one() {
    let app = spawn_forgetful().await;
    let store = app.store.clone().unwrap();
    let res = client_credentials(&app, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = s(&json(res).await, "access_token");
    let hash = hash_token(&token);
    assert!(
        store.get_access_token(&hash).await.unwrap().is_none(),
        "no write at issuance"
    );
    assert_eq!(
        tokens_issued(&app.metrics_text().await, Some("client_credentials")),
        1.0
    );
    // Known from its signature alone (no cache remembers it here).
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(app.introspect(&token).await["active"], true);

    // Another client's revocation is ignored (RFC 7009 2.1) and writes nothing.
    assert_eq!(app.revoke((APP, APP_SECRET), &token).await.status(), StatusCode::OK);
    assert!(store.get_access_token(&hash).await.unwrap().is_none());
    assert_eq!(app.introspect(&token).await["active"], true);

    // Its own: the store keeps it revoked, until its expiry.
    assert_eq!(app.revoke(JWT_CLIENT, &token).await.status(), StatusCode::OK);
    let kept = store.get_access_token(&hash).await.unwrap().expect("a revoked record");
    assert!(kept.revoked_at.is_some());
    assert_eq!(app.introspect(&token).await["active"], false);
    app.advance(Duration::from_secs(901));
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert!(
        store.get_access_token(&hash).await.unwrap().is_none(),
        "swept at expiry"
    );
    assert_eq!(app.introspect(&token).await["active"], false, "expired anyway");
}

#[tokio::test]
async fn revoking_a_jwt_access_token_or_its_grant_stops_it_at_once() {
    let app = spawn_forgetful().await;
    let t = json(code_flow(&app, &[], &[]).await).await;
    let access = s(&t, "access_token");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);
    assert_eq!(app.revoke(JWT_CLIENT, &access).await.status(), StatusCode::OK);
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access).await["active"], false);

    // Revoking the grant (by its refresh token) takes its JWT access tokens with it.
    let t = json(code_flow(&app, &[], &[]).await).await;
    let access = s(&t, "access_token");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);
    assert_eq!(
        app.revoke(JWT_CLIENT, &s(&t, "refresh_token")).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    // Also once the cascade purged its record: a user's JWT is never taken on its signature alone.
    app.state.tokens.purge_pending(100, app.clock.now()).await.unwrap();
    let store = app.store.as_ref().unwrap();
    assert!(
        store.get_access_token(&hash_token(&access)).await.unwrap().is_none(),
        "purged"
    );
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access).await["active"], false);
}

#[tokio::test]
async fn the_audience_is_the_requested_resources_and_userinfo_takes_only_the_issuers() {
    let app = spawn_issuer(|_| {}).await;
    let issuer = issuer(&app).await;
    // Two resources at authorize: both in `aud` when the token request names none.
    let t = json(code_flow(&app, &[API, BILLING], &[]).await).await;
    let (_, c) = verify_as_resource_server(&app, &s(&t, "access_token"), BILLING).await;
    assert_eq!(c["aud"], json!([API, BILLING]));
    assert_eq!(
        app.introspect(&s(&t, "access_token")).await["aud"],
        json!([API, BILLING])
    );
    // A token meant for other resource servers only is not one for UserInfo.
    let res = app.userinfo(&s(&t, "access_token")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A refresh narrows to one of the grant's resources.
    let res = app
        .token(
            Some(JWT_CLIENT),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&t, "refresh_token")),
                ("resource", BILLING),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let t = json(res).await;
    let (_, c) = verify_as_resource_server(&app, &s(&t, "access_token"), BILLING).await;
    assert_eq!(c["aud"], BILLING);

    // Without resources, the issuer: UserInfo takes it.
    let t = json(code_flow(&app, &[], &[]).await).await;
    let access = s(&t, "access_token");
    assert_eq!(verify_as_resource_server(&app, &access, &issuer).await.1["aud"], issuer);
    assert_eq!(json(app.userinfo(&access).await).await["sub"], ALICE_SUB);
    // Opaque tokens carry their audience too (introspection).
    let t = app.app_tokens("openid").await;
    assert_eq!(app.introspect(&s(&t, "access_token")).await["aud"], issuer);
}

#[tokio::test]
async fn a_resource_the_client_or_grant_may_not_name_is_invalid_target_and_changes_nothing() {
    let app = spawn_app().await;
    let session = app.login().await;
    // At authorize: back to the client, with its state.
    for bad in [
        "https://evil.example",
        "https://api.example.test#frag",
        "not-a-uri",
        "/relative",
    ] {
        let res = authorize_jwt_app(&app, &session, &[("resource", API), ("resource", bad)]).await;
        let p = location_params(&res);
        assert_eq!(param(&p, "error").as_deref(), Some("invalid_target"), "{bad}");
        assert_eq!(param(&p, "state").as_deref(), Some("st"));
        assert!(param(&p, "code").is_none());
    }
    // A client with no resources may name none.
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", APP),
                ("resource", API),
                ("code_challenge", &Pkce::fixed().challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(
        param(&location_params(&res), "error").as_deref(),
        Some("invalid_target")
    );

    // At the token endpoint: nothing issued.
    let before = tokens_issued(&app.metrics_text().await, Some("client_credentials"));
    for bad in ["https://evil.example", "https://api.example.test#frag"] {
        assert_eq!(
            error_of(client_credentials(&app, &[("resource", bad)]).await).await,
            (StatusCode::BAD_REQUEST, "invalid_target".to_owned())
        );
    }
    assert_eq!(
        tokens_issued(&app.metrics_text().await, Some("client_credentials")),
        before
    );
    let res = client_credentials(&app, &[("resource", API), ("resource", BILLING)]).await;
    assert_eq!(res.status(), StatusCode::OK, "the client's own resources");

    // A code made for one resource cannot be exchanged for another of the client's; the refused
    // exchange leaves the code for one that names the right resource.
    let res = authorize_jwt_app(&app, &session, &[("resource", API)]).await;
    let code = param(&location_params(&res), "code").expect("a code");
    let exchange = |resource: &'static str| {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", resource),
        ];
        let app = &app;
        async move { app.token(Some(JWT_CLIENT), &form).await }
    };
    assert_eq!(
        error_of(exchange(BILLING).await).await,
        (StatusCode::BAD_REQUEST, "invalid_target".to_owned())
    );
    assert_eq!(exchange(API).await.status(), StatusCode::OK);
    // And a refresh cannot widen its grant's resources.
    let t = json(code_flow(&app, &[API], &[API]).await).await;
    let refresh = s(&t, "refresh_token");
    let res = app
        .token(
            Some(JWT_CLIENT),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("resource", BILLING),
            ],
        )
        .await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_target".to_owned())
    );
    // The refresh token was not spent by the refused request.
    let res = app
        .token(
            Some(JWT_CLIENT),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn forged_expired_and_foreign_jwts_are_not_access_tokens() {
    let app = spawn_app().await;
    let cc = s(&json(client_credentials(&app, &[]).await).await, "access_token");
    let parts: Vec<&str> = cc.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());

    // More scope, same signature.
    let mut wider = claims.clone();
    wider["scope"] = json!("openid profile email");
    let tampered = format!("{}.{}.{}", parts[0], b64(&wider), parts[2]);
    // `alg: none` naming a real key.
    let mut none = header.clone();
    none["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64(&none), parts[1]);
    // HS256 with the public key's kid (the algorithm-confusion attack).
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = header["kid"].as_str().map(str::to_owned);
    hs.typ = Some("at+jwt".into());
    let confused = jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(b"k")).unwrap();
    // A key this server never had.
    let mut unknown = header.clone();
    unknown["kid"] = json!("not-a-kid");
    let unknown_kid = format!("{}.{}.{}", b64(&unknown), parts[1], parts[2]);
    // An ID token (signed by the same keys, `typ` JWT) is not an access token.
    let id_token = s(&app.app_tokens("openid").await, "id_token");

    for (what, token) in [
        ("tampered claims", &tampered),
        ("alg none", &unsigned),
        ("HS256 with an RSA/EC kid", &confused),
        ("unknown kid", &unknown_kid),
        ("an ID token", &id_token),
    ] {
        assert_eq!(app.introspect(token).await["active"], false, "{what}");
        assert_eq!(app.userinfo(token).await.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(app.revoke(JWT_CLIENT, token).await.status(), StatusCode::OK, "{what}");
        let store = app.store.as_ref().unwrap();
        assert!(
            store.get_access_token(&hash_token(token)).await.unwrap().is_none(),
            "{what}"
        );
    }
    assert_eq!(app.introspect(&cc).await["active"], true, "the original still is one");
    app.advance(Duration::from_secs(901));
    assert_eq!(app.introspect(&cc).await["active"], false, "expired");
}

/// Polls `node`'s introspection until `token` is inactive; bounded by the cache TTL.
async fn until_inactive(node: &TestApp, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        if node.introspect(token).await["active"] == false {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still active after the cache TTL"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_revoked_jwt_access_token_is_refused_on_every_node() {
    let db = TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    // Issued on A without a write, known on B from its signature (and now cached there).
    let cc = s(&json(client_credentials(&a, &[]).await).await, "access_token");
    assert_eq!(b.introspect(&cc).await["active"], true);
    assert_eq!(a.revoke(JWT_CLIENT, &cc).await.status(), StatusCode::OK);
    assert_eq!(
        a.introspect(&cc).await["active"],
        false,
        "at once on the node that revoked"
    );
    until_inactive(&b, &cc).await;
    // A user's JWT access token, cached on B, revoked on A.
    let t = json(code_flow(&a, &[], &[]).await).await;
    let access = s(&t, "access_token");
    assert_eq!(b.userinfo(&access).await.status(), StatusCode::OK);
    assert_eq!(a.revoke(JWT_CLIENT, &access).await.status(), StatusCode::OK);
    crate::postgres::until_rejected(&b, &access).await;
}
