//! OpenID Connect against outside JOSE: the `openidconnect` crate as a strict relying party
//! (discovery, the code flow with PKCE and nonce, ID token validation against the JWKS, at_hash,
//! refresh) for each signature algorithm, and `jsonwebtoken` (RustCrypto, not the server's
//! aws-lc) verifying tokens against the JWKS across key rotations.

use std::time::Duration;

use authplane::jose::Alg;
use authplane::service::keys::KeyState;
use authplane_testkit::app::spawn_issuer;
use authplane_testkit::{ALICE_SUB, APP, APP_REDIRECT, APP_SECRET, TestApp, json, location_params, param};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::Value;

/// The payload of a compact JWS, unverified (the tests verify with outside libraries).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(jwt: &str) -> Value {
    let h = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// Verifies `jwt` against the server's current JWKS with jsonwebtoken (signature, `alg` of the
/// key; expiry is the server's manual clock's business, so not checked here).
async fn verifies_against_jwks(app: &TestApp, jwt: &str) -> bool {
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .client
        .get(app.url("/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = jsonwebtoken::decode_header(jwt).unwrap();
    let Some(jwk) = jwks.find(h.kid.as_deref().unwrap()) else {
        return false;
    };
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(h.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(jwt, &key, &v).is_ok()
}

/// A strict relying party runs discovery, the code flow with PKCE and a nonce, validates the ID
/// token (signature against the JWKS, iss, aud, azp, exp, nonce, at_hash), then refreshes and
/// validates the new ID token: for a client of each algorithm.
#[tokio::test]
async fn a_strict_relying_party_completes_the_code_flow_and_refresh_with_each_algorithm() {
    let app = spawn_issuer(|_| {}).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issuer = IssuerUrl::new(app.base.clone()).unwrap();
    let provider = CoreProviderMetadata::discover_async(issuer, &http).await.unwrap();
    let session = app.login().await;
    let mut last_id_token = None;
    for (client_id, alg, jws_alg) in [
        (APP, Alg::RS256, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        ("oidc-es256", Alg::ES256, CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        ("oidc-eddsa", Alg::EdDSA, CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let client = CoreClient::from_provider_metadata(
            provider.clone(),
            ClientId::new(client_id.into()),
            Some(ClientSecret::new(APP_SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(APP_REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf, nonce) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        // The browser: the session cookie goes with the authorize request.
        let res = app
            .client
            .get(url.as_str())
            .header("cookie", authplane_testkit::session_header(&session))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FOUND, "{client_id}");
        let back = location_params(&res);
        assert_eq!(param(&back, "state").as_deref(), Some(csrf.secret().as_str()));
        let code = param(&back, "code").unwrap();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        let id_verifier = client.id_token_verifier().set_allowed_algs([jws_alg.clone()]);
        let id_token = tokens.id_token().expect("an ID token");
        let id_claims = id_token.claims(&id_verifier, &nonce).unwrap();
        assert_eq!(id_claims.subject().as_str(), ALICE_SUB);
        let at_hash = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&id_verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(id_claims.access_token_hash(), Some(&at_hash), "{client_id}: at_hash");
        let raw = id_token.to_string();
        let (h, c) = (header(&raw), claims(&raw));
        assert_eq!(
            (h["alg"].as_str(), h["typ"].as_str()),
            (Some(alg.as_str()), Some("JWT"))
        );
        assert_eq!(c["azp"], client_id);
        assert!(c["sid"].as_str().is_some_and(|s| s.len() >= 16), "{c}");
        assert!(c["auth_time"].as_i64().is_some());
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            3600,
            "--id-token-ttl"
        );
        assert!(verifies_against_jwks(&app, &raw).await);

        // Refresh: a new ID token for the same authentication, without the nonce.
        let refreshed = client
            .exchange_refresh_token(&RefreshToken::new(tokens.refresh_token().unwrap().secret().clone()))
            .unwrap()
            .request_async(&http)
            .await
            .unwrap();
        let again = refreshed.id_token().expect("an ID token on refresh");
        let again_claims = again.claims(&id_verifier, |_: Option<&Nonce>| Ok(())).unwrap();
        assert_eq!(again_claims.subject(), id_claims.subject());
        assert_eq!(again_claims.auth_time(), id_claims.auth_time());
        assert!(again_claims.nonce().is_none());
        assert_eq!(claims(&again.to_string())["sid"], c["sid"]);
        if client_id == APP {
            // demo-app registered the post-logout URI used below.
            last_id_token = Some(id_token.clone());
        }
    }

    // RP-initiated logout as the library builds it: the end_session_endpoint from discovery,
    // the last ID token as the hint, demo-app's registered post-logout URI and a state.
    let with_logout = ProviderMetadataWithLogout::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
        .await
        .unwrap();
    let end = with_logout
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .expect("end_session_endpoint");
    let logout = LogoutRequest::from(end)
        .set_id_token_hint(&last_id_token.unwrap())
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new("http://127.0.0.1:9000/bye".into()).unwrap())
        .set_state(CsrfToken::new("bye-state".into()))
        .http_get_url();
    let res = app
        .client
        .get(logout.as_str())
        .header("cookie", authplane_testkit::session_header(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "http://127.0.0.1:9000/bye?state=bye-state");
    let q = [("response_type", "code"), ("client_id", APP), ("prompt", "none")];
    let after = app.authorize(Some(&session), &q).await;
    assert_eq!(
        param(&location_params(&after), "error").as_deref(),
        Some("login_required")
    );
}

/// The ID token carries the nonce exactly as sent; without `openid` there is no ID token, and
/// client_credentials never has one.
#[tokio::test]
async fn the_nonce_is_echoed_and_only_openid_grants_get_id_tokens() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let pkce = authplane_testkit::Pkce::fixed();
    let nonce = "n-0S6_WzA2Mj é/+";
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", APP),
                ("redirect_uri", APP_REDIRECT),
                ("scope", "openid"),
                ("nonce", nonce),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    let code = param(&location_params(&res), "code").unwrap();
    let tokens = json(app.redeem_app(&code).await).await;
    let c = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(c["nonce"], nonce);
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str()),
        (Some("http://127.0.0.1:8080"), Some(APP))
    );

    let plain = app.app_tokens("profile").await;
    assert!(plain.get("id_token").is_none(), "{plain}");
    let refreshed = json(app.refresh_app(plain["refresh_token"].as_str().unwrap()).await).await;
    assert!(refreshed.get("id_token").is_none());
    let cc = json(
        app.token(
            Some((APP, APP_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "openid")],
        )
        .await,
    )
    .await;
    assert!(cc.get("id_token").is_none(), "{cc}");
}

/// The JWKS holds one key per algorithm, public parameters only, with a max-age shorter than
/// the publish-ahead time.
#[tokio::test]
async fn the_jwks_publishes_public_keys_only() {
    let app = authplane_testkit::spawn_app().await;
    let res = app.client.get(app.url("/auth/jwks")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cache = res.headers()["cache-control"].to_str().unwrap().to_owned();
    let max_age: u64 = cache.rsplit("max-age=").next().unwrap().parse().unwrap();
    assert!(max_age > 0 && max_age < 3600, "{cache}");
    let jwks = json(res).await;
    let keys = jwks["keys"].as_array().unwrap();
    let mut algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(k["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
        let fields: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(!fields.contains(&private), "private parameter {private} in {k}");
        }
    }
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap();
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    assert!(n.len() * 8 >= 2048, "RSA 2048 or larger");
    let discovery = json(
        app.client
            .get(app.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(discovery["jwks_uri"], "http://127.0.0.1:8080/auth/jwks");
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
}

fn kid_of(jwt: &str) -> String {
    header(jwt)["kid"].as_str().unwrap().to_owned()
}

async fn id_token(app: &TestApp) -> String {
    app.app_tokens("openid").await["id_token"].as_str().unwrap().to_owned()
}

fn state_of(app: &TestApp, kid: &str) -> Option<KeyState> {
    app.state
        .keys
        .states()
        .into_iter()
        .find(|(k, _, _)| k == kid)
        .map(|(_, _, s)| s)
}

/// Rotation on the manual clock: the successor is published `--key-publish-ahead` before it
/// signs; a token signed before the rotation verifies after it; the retired key leaves the JWKS
/// once its last token has expired.
#[tokio::test]
async fn keys_rotate_on_schedule_published_ahead_and_retired_after_their_tokens() {
    let app = authplane_testkit::spawn_with(
        authplane_testkit::test_config(|s| {
            s.key_rotation_interval = Some("10m".parse().unwrap());
            s.key_publish_ahead = Some("2m".parse().unwrap());
            s.id_token_ttl = Some("5m".parse().unwrap());
            s.access_token_ttl = Some("5m".parse().unwrap());
        }),
        None,
    )
    .await;
    let keys = &app.state.keys;
    let before = id_token(&app).await;
    let first = kid_of(&before);
    assert_eq!(state_of(&app, &first), Some(KeyState::Active));

    // Just before the successor is due, nothing new.
    app.clock.advance(Duration::from_secs(7 * 60));
    keys.refresh().await.unwrap();
    assert_eq!(keys.states().len(), 3);

    // Publish-ahead time: the successor is in the JWKS, not signing yet.
    app.clock.advance(Duration::from_secs(61));
    keys.refresh().await.unwrap();
    let next: Vec<String> = keys
        .states()
        .into_iter()
        .filter(|(_, alg, s)| *alg == Alg::RS256 && *s == KeyState::Next)
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(next.len(), 1, "{:?}", keys.states());
    let jwks = json(app.client.get(app.url("/auth/jwks")).send().await.unwrap()).await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == next[0].as_str())
    );
    assert_eq!(kid_of(&id_token(&app).await), first, "the successor does not sign yet");

    // Rotation time: the successor signs; the old key is retired, still published.
    app.clock.advance(Duration::from_secs(2 * 60));
    keys.refresh().await.unwrap();
    let after = id_token(&app).await;
    assert_eq!(kid_of(&after), next[0]);
    assert_eq!(state_of(&app, &first), Some(KeyState::Retired));
    assert!(
        verifies_against_jwks(&app, &before).await,
        "a token from before the rotation"
    );
    assert!(verifies_against_jwks(&app, &after).await);

    // Its tokens have all expired (5 min, plus a refresh interval of slack): it leaves.
    app.clock.advance(Duration::from_secs(5 * 60 + 31));
    keys.refresh().await.unwrap();
    assert_eq!(state_of(&app, &first), None, "{:?}", keys.states());
    assert!(!verifies_against_jwks(&app, &before).await);
    assert!(verifies_against_jwks(&app, &after).await);
}

/// A rotation at once, and one that withdraws the old keys (a compromise).
#[tokio::test]
async fn a_rotation_at_once_and_a_withdrawal() {
    let app = authplane_testkit::spawn_app().await;
    let keys = &app.state.keys;
    let before = id_token(&app).await;
    keys.rotate_now(false).await.unwrap();
    let after = id_token(&app).await;
    assert_ne!(kid_of(&before), kid_of(&after));
    assert!(verifies_against_jwks(&app, &before).await, "retired, still published");
    keys.rotate_now(true).await.unwrap();
    let third = id_token(&app).await;
    assert!(!verifies_against_jwks(&app, &after).await, "withdrawn at once");
    assert!(verifies_against_jwks(&app, &third).await);
}

/// Two PostgreSQL nodes started apart sign with one key set and publish one JWKS; rotating on
/// both at the same moment creates one successor per algorithm; the private keys are sealed in
/// the table; a node with another key-encryption key refuses to start and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nodes_share_one_key_set_and_rotate_once() {
    let db = crate::pg::TestDb::new().await;
    let schedule = |s: &mut authplane::config::Settings| {
        s.key_rotation_interval = Some("10m".parse().unwrap());
        s.key_publish_ahead = Some("2m".parse().unwrap());
    };
    let a = db.spawn(schedule).await;
    let b = db.spawn(schedule).await;
    assert_eq!(a.jwks_kids().await.len(), 3);
    assert_eq!(a.jwks_kids().await, b.jwks_kids().await, "one key set");
    let from_a = id_token(&a).await;
    assert!(
        verifies_against_jwks(&b, &from_a).await,
        "A's token verifies against B's JWKS"
    );

    for node in [&a, &b] {
        node.clock.advance(Duration::from_secs(8 * 60 + 1));
    }
    let (ra, rb) = tokio::join!(a.state.keys.refresh(), b.state.keys.refresh());
    ra.unwrap();
    rb.unwrap();
    let store = db.store().await;
    let rows = authplane::store::Store::signing_keys(&*store).await.unwrap();
    for alg in Alg::ALL {
        let mut generations: Vec<i64> = rows.iter().filter(|r| r.alg == alg).map(|r| r.generation).collect();
        generations.sort_unstable();
        assert_eq!(generations, [0, 1], "{alg}: one successor for the deployment");
    }
    // Each node sees the other's successor after its next refresh (in production: within a
    // quarter of the publish-ahead time).
    a.state.keys.refresh().await.unwrap();
    assert_eq!(a.jwks_kids().await, b.jwks_kids().await);
    assert_eq!(a.jwks_kids().await.len(), 6);

    // At rest: sealed, never the PKCS#8 (its algorithm identifiers would show).
    let kek = authplane::jose::KeyEncryptionKey::parse(authplane_testkit::fixture::KEY_ENCRYPTION_KEY).unwrap();
    for r in &rows {
        let oids: [&[u8]; 3] = [
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01], // rsaEncryption
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],             // id-ecPublicKey
            &[0x06, 0x03, 0x2b, 0x65, 0x70],                         // id-Ed25519
        ];
        for oid in oids {
            assert!(
                !r.sealed_private_key.windows(oid.len()).any(|w| w == oid),
                "{r:?} holds a clear key"
            );
        }
        assert!(!r.public_jwk.contains("\"d\""), "{r:?}");
        // It opens only as this server seals it: with the key, its kid and its alg.
        let aad = format!("authplane-signing-key:{}:{}", r.kid, r.alg);
        let clear = kek.open(aad.as_bytes(), &r.sealed_private_key).unwrap();
        assert!(authplane::jose::PrivateKey::from_pkcs8(r.alg, &clear).is_ok());
        assert!(kek.open(b"another row", &r.sealed_private_key).is_err());
    }

    // Another key-encryption key: a clear error at start-up, and nothing written.
    let wrong = db.config(|s| {
        s.key_encryption_key = Some(
            base64::engine::general_purpose::STANDARD
                .encode([9u8; 32])
                .parse()
                .unwrap(),
        );
    });
    let err = match authplane::Application::build(wrong).await {
        Ok(_) => panic!("a node with another key-encryption key started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("key-encryption key does not open"), "{err}");
    assert!(!err.contains(authplane_testkit::fixture::KEY_ENCRYPTION_KEY));
    let after = authplane::store::Store::signing_keys(&*store).await.unwrap();
    assert_eq!(after.len(), rows.len(), "the refused node wrote nothing");
}

/// An authorize request of demo-app with PKCE and `extra` parameters.
async fn authorize_with(app: &TestApp, session: Option<&str>, extra: &[(&str, &str)]) -> reqwest::Response {
    let pkce = authplane_testkit::Pkce::fixed();
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", APP_REDIRECT),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    app.authorize(session, &q).await
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// The error an authorize answer sends back to the client (`None` for a code).
fn redirect_error(res: &reqwest::Response) -> Option<String> {
    assert_eq!(res.status(), StatusCode::FOUND);
    let p = location_params(res);
    assert!(location(res).starts_with(APP_REDIRECT), "{}", location(res));
    match param(&p, "error") {
        Some(e) => {
            assert!(param(&p, "code").is_none());
            assert_eq!(param(&p, "state").as_deref(), Some("st"));
            Some(e)
        }
        None => {
            assert!(param(&p, "code").is_some());
            None
        }
    }
}

fn goes_to_login(res: &reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(res.status(), StatusCode::FOUND);
    let loc = location(res);
    assert!(loc.starts_with("/auth/login?"), "{loc}");
    authplane_testkit::oauth::query_pairs(&loc)
}

/// `request`, a `request_uri` not from `/auth/par` (those are in `par::`), `response_mode` other than query, and malformed `prompt` and
/// `max_age` go back to the client as errors, and issue nothing.
#[tokio::test]
async fn unsupported_and_malformed_openid_parameters_are_errors_for_the_client() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    for (extra, error) in [
        (("request", "eyJhbGciOiJub25lIn0.e30."), "request_not_supported"),
        (
            ("request_uri", "https://client.example/request.jwt"),
            "request_uri_not_supported",
        ),
        (("response_mode", "form_post"), "invalid_request"),
        (("prompt", "none login"), "invalid_request"),
        (("prompt", "bogus"), "invalid_request"),
        (("max_age", "-1"), "invalid_request"),
        (("max_age", "soon"), "invalid_request"),
        (("login_hint", &"a".repeat(300)), "invalid_request"),
    ] {
        let res = authorize_with(&app, Some(&session), &[extra]).await;
        assert_eq!(redirect_error(&res).as_deref(), Some(error), "{extra:?}");
    }
    let res = authorize_with(
        &app,
        Some(&session),
        &[("response_mode", "query"), ("prompt", "select_account")],
    )
    .await;
    assert_eq!(redirect_error(&res), None);
}

/// `prompt=login` shows the login form despite a session and comes back without asking again;
/// the new ID token has a new `auth_time`.
#[tokio::test]
async fn prompt_login_asks_again_and_the_id_token_says_when() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let first = id_token(&app).await;
    app.clock.advance(Duration::from_secs(30));
    let res = authorize_with(&app, Some(&session), &[("prompt", "login"), ("nonce", "n1")]).await;
    let to_login = goes_to_login(&res);
    let return_to = param(&to_login, "return_to").unwrap();
    assert!(!return_to.contains("prompt"), "{return_to}");
    assert!(return_to.contains("nonce=n1"), "{return_to}");
    let login = app
        .browser_login(authplane_testkit::ALICE, authplane_testkit::ALICE_PASSWORD, &return_to)
        .await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let new_session = authplane_testkit::session_cookie(login.headers()).unwrap();
    let back = app
        .client
        .get(app.url(&location(&login)))
        .header("cookie", authplane_testkit::session_header(&new_session))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect_error(&back), None);
    let code = param(&location_params(&back), "code").unwrap();
    let tokens = json(app.redeem_app(&code).await).await;
    let c = claims(tokens["id_token"].as_str().unwrap());
    let before = claims(&first)["auth_time"].as_i64().unwrap();
    assert!(c["auth_time"].as_i64().unwrap() >= before + 30, "{c}");
    assert_eq!(c["nonce"], "n1");
}

/// `max_age`: a login older than it needs a new one (`login_required` with `prompt=none`);
/// `max_age=0` is `prompt=login`. `login_hint` pre-fills the username, escaped.
#[tokio::test]
async fn max_age_and_login_hint() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    app.clock.advance(Duration::from_secs(90));
    let res = authorize_with(&app, Some(&session), &[("max_age", "120")]).await;
    assert_eq!(redirect_error(&res), None, "a 90 s old login is within 120 s");
    let res = authorize_with(&app, Some(&session), &[("max_age", "60"), ("prompt", "none")]).await;
    assert_eq!(redirect_error(&res).as_deref(), Some("login_required"));
    let res = authorize_with(&app, Some(&session), &[("max_age", "60")]).await;
    let to_login = goes_to_login(&res);
    assert!(param(&to_login, "return_to").unwrap().contains("max_age=60"));
    let res = authorize_with(&app, Some(&session), &[("max_age", "0")]).await;
    let to_login = goes_to_login(&res);
    assert!(!param(&to_login, "return_to").unwrap().contains("max_age"));

    let hint = r#"alice"><script>x</script>"#;
    let res = authorize_with(&app, None, &[("login_hint", hint)]).await;
    let to_login = goes_to_login(&res);
    assert_eq!(param(&to_login, "login_hint").as_deref(), Some(hint));
    let page = app
        .client
        .get(app.url(&location(&res)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"value="alice&quot;&gt;&lt;script&gt;x&lt;/script&gt;""#),
        "{page}"
    );
    assert!(!page.contains("<script>"));
    assert!(
        page.contains("to continue to <strong>demo-app</strong>"),
        "the page names the client"
    );
}

/// `id_token_hint`: one of ours for this client (even expired) names the user; another user's
/// session means a new login (`login_required` with `prompt=none`); a forged, foreign, unsigned
/// or unknown-key hint is `invalid_request`, and nothing is issued.
#[tokio::test]
async fn id_token_hints() {
    let app = authplane_testkit::spawn_app().await;
    let alice = app.login().await;
    let hint = id_token(&app).await;
    app.clock.advance(Duration::from_secs(2 * 3600));
    let res = authorize_with(&app, Some(&alice), &[("id_token_hint", &hint), ("prompt", "none")]).await;
    assert_eq!(redirect_error(&res), None, "an expired hint of ours names alice");

    let bob = app
        .login_as(authplane_testkit::BOB, authplane_testkit::BOB_PASSWORD)
        .await;
    let res = authorize_with(&app, Some(&bob), &[("id_token_hint", &hint), ("prompt", "none")]).await;
    assert_eq!(redirect_error(&res).as_deref(), Some("login_required"));
    let res = authorize_with(&app, Some(&bob), &[("id_token_hint", &hint)]).await;
    goes_to_login(&res);

    // Another client's ID token (ES256, for oidc-es256).
    let session = app.login().await;
    let code = app.code(&session, "oidc-es256", APP_REDIRECT, "openid").await;
    let foreign = json(app.redeem(("oidc-es256", APP_SECRET), APP_REDIRECT, &code).await).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = hint.split('.').collect();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let mut forged_claims = claims(&hint);
    forged_claims["sub"] = "u-bob".into();
    let forged = format!("{}.{}.{}", parts[0], b64(&forged_claims), parts[2]);
    let mut none_header = header(&hint);
    none_header["alg"] = "none".into();
    let unsigned = format!("{}.{}.", b64(&none_header), parts[1]);
    let mut unknown_header = header(&hint);
    unknown_header["kid"] = "not-a-key".into();
    let unknown_kid = format!("{}.{}.{}", b64(&unknown_header), parts[1], parts[2]);
    for (what, bad) in [
        ("forged", forged.as_str()),
        ("another client's", foreign.as_str()),
        ("alg none", unsigned.as_str()),
        ("unknown kid", unknown_kid.as_str()),
        ("not a JWT", "garbage"),
    ] {
        let res = authorize_with(&app, Some(&alice), &[("id_token_hint", bad)]).await;
        assert_eq!(redirect_error(&res).as_deref(), Some("invalid_request"), "{what}");
    }
}

/// Everything `/.well-known/openid-configuration` advertises works: each endpoint answers its
/// method, each prompt value, scope, response type and mode, auth method and claim is usable, and
/// nothing unsupported is claimed.
#[tokio::test]
async fn every_advertised_value_works() {
    let app = authplane_testkit::spawn_app().await;
    let d = json(
        app.client
            .get(app.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let base = "http://127.0.0.1:8080";
    let path = |key: &str| d[key].as_str().unwrap().strip_prefix(base).unwrap().to_owned();
    for (key, method) in [
        ("authorization_endpoint", "GET"),
        ("token_endpoint", "POST"),
        ("userinfo_endpoint", "GET"),
        ("revocation_endpoint", "POST"),
        ("introspection_endpoint", "POST"),
        ("jwks_uri", "GET"),
        ("end_session_endpoint", "GET"),
    ] {
        let url = app.url(&path(key));
        let res = match method {
            "GET" => app.client.get(&url).send().await.unwrap(),
            _ => app.client.post(&url).form(&[("x", "y")]).send().await.unwrap(),
        };
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&res.status()),
            "{key}: {}",
            res.status()
        );
    }
    let list = |key: &str| -> Vec<String> {
        d[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list("response_types_supported"), ["code"]);
    assert_eq!(list("response_modes_supported"), ["query"]);
    assert_eq!(d["request_parameter_supported"], false);
    assert_eq!(d["request_uri_parameter_supported"], false);
    let session = app.login().await;
    for prompt in list("prompt_values_supported") {
        let res = authorize_with(&app, Some(&session), &[("prompt", &prompt), ("response_mode", "query")]).await;
        let loc = location(&res);
        assert!(!loc.contains("error="), "prompt={prompt}: {loc}");
    }
    // Every scope is some client's to ask for, and yields tokens.
    for scope in list("scopes_supported") {
        let (client, secret) = match scope.as_str() {
            "admin" => (
                authplane_testkit::fixture::ADMIN,
                authplane_testkit::fixture::ADMIN_SECRET,
            ),
            "offline_access" => ("oidc-es256", APP_SECRET),
            _ => (APP, APP_SECRET),
        };
        let res = if client == authplane_testkit::fixture::ADMIN {
            app.token(
                Some((client, secret)),
                &[("grant_type", "client_credentials"), ("scope", &scope)],
            )
            .await
        } else {
            let code = app.code(&session, client, APP_REDIRECT, &scope).await;
            app.redeem((client, secret), APP_REDIRECT, &code).await
        };
        assert_eq!(res.status(), StatusCode::OK, "scope {scope}");
    }
    // Every auth method of the token endpoint.
    for method in list("token_endpoint_auth_methods_supported") {
        let res = match method.as_str() {
            "client_secret_basic" => {
                app.token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
                    .await
            }
            "client_secret_post" => {
                app.token(
                    None,
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", APP),
                        ("client_secret", APP_SECRET),
                    ],
                )
                .await
            }
            "none" => {
                // A public client: a code of demo-spa, its PKCE verifier, its client_id alone.
                let code = app
                    .code(
                        &session,
                        authplane_testkit::SPA,
                        authplane_testkit::SPA_REDIRECT,
                        "openid",
                    )
                    .await;
                app.token(
                    None,
                    &[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", authplane_testkit::SPA_REDIRECT),
                        ("client_id", authplane_testkit::SPA),
                        ("code_verifier", authplane_testkit::VERIFIER),
                    ],
                )
                .await
            }
            // Needs a client whose private key the test holds: shown at every endpoint by
            // `private_key_jwt::a_client_authenticates_with_a_signed_assertion_at_every_endpoint`.
            "private_key_jwt" => continue,
            other => panic!("advertised but untested: {other}"),
        };
        assert_eq!(res.status(), StatusCode::OK, "{method}");
    }
    // Every claim is in an ID token or in UserInfo for a token with every scope.
    let tokens = app.app_tokens("openid profile email").await;
    let mut seen: Vec<String> = claims(tokens["id_token"].as_str().unwrap())
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let res = authorize_with(&app, Some(&session), &[("nonce", "n")]).await;
    let code = param(&location_params(&res), "code").unwrap();
    let with_nonce = json(app.redeem_app(&code).await).await;
    seen.extend(
        claims(with_nonce["id_token"].as_str().unwrap())
            .as_object()
            .unwrap()
            .keys()
            .cloned(),
    );
    let info = json(app.userinfo(&s_of(&tokens, "access_token")).await).await;
    seen.extend(info.as_object().unwrap().keys().cloned());
    for claim in list("claims_supported") {
        assert!(seen.contains(&claim), "{claim} advertised but never issued");
    }
    for alg in list("id_token_signing_alg_values_supported") {
        assert!(Alg::parse(&alg).is_some(), "{alg}");
    }
    // Proofs and assertions of each of these algorithms are made and accepted by the `dpop::`
    // and `private_key_jwt::` tests; here, that the lists name exactly those.
    for key in [
        "dpop_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
    ] {
        assert_eq!(list(key), ["ES256", "EdDSA", "RS256"], "{key}");
    }
}

fn s_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap().to_owned()
}

/// A log sink for one test: every line the server writes while the subscriber is the thread's
/// default (the test runtime is single-threaded, so the server's tasks log here too).
#[derive(Clone, Default)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Invariant 10 of docs/reference.md: neither a private key nor the key-encryption key appears
/// in a log line (at trace level) or in any answer, through sign-in, the code flow with each
/// algorithm, refresh, discovery, the JWKS, a rotation, an id_token_hint and logout.
#[tokio::test]
async fn private_keys_and_the_key_encryption_key_never_reach_a_log_or_an_answer() {
    use authplane_testkit::fixture::KEY_ENCRYPTION_KEY;
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let app = authplane_testkit::spawn_with(
        authplane_testkit::test_config(|s| s.key_encryption_key = Some(KEY_ENCRYPTION_KEY.parse().unwrap())),
        None,
    )
    .await;
    let mut answers = Vec::new();
    let session = app.login().await;
    for client in [APP, "oidc-es256", "oidc-eddsa"] {
        let code = app.code(&session, client, APP_REDIRECT, "openid profile").await;
        let res = app.redeem((client, APP_SECRET), APP_REDIRECT, &code).await;
        let tokens = json(res).await;
        let refreshed = app
            .token(
                Some((client, APP_SECRET)),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ],
            )
            .await
            .text()
            .await
            .unwrap();
        answers.push(tokens.to_string());
        answers.push(refreshed);
    }
    app.state.keys.rotate_now(false).await.unwrap();
    let hint = id_token(&app).await;
    let res = authorize_with(&app, Some(&session), &[("id_token_hint", &hint)]).await;
    answers.push(location(&res));
    for path in [
        "/auth/jwks",
        "/.well-known/openid-configuration",
        "/debug/health",
        "/metrics",
    ] {
        answers.push(
            app.client
                .get(app.url(path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    let res = app
        .client
        .get(app.url("/auth/end-session"))
        .query(&[("id_token_hint", hint.as_str())])
        .header("cookie", authplane_testkit::session_header(&session))
        .send()
        .await
        .unwrap();
    answers.push(res.text().await.unwrap());

    // The private keys, opened from the store as only the server can.
    let kek = authplane::jose::KeyEncryptionKey::parse(KEY_ENCRYPTION_KEY).unwrap();
    let rows = app.store.as_ref().unwrap().signing_keys().await.unwrap();
    assert_eq!(rows.len(), 6, "three keys and their successors");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut secrets = vec![KEY_ENCRYPTION_KEY.to_owned()];
    for r in &rows {
        let aad = format!("authplane-signing-key:{}:{}", r.kid, r.alg);
        let pkcs8 = kek.open(aad.as_bytes(), &r.sealed_private_key).unwrap();
        secrets.push(base64::engine::general_purpose::STANDARD.encode(&*pkcs8));
        secrets.push(URL_SAFE_NO_PAD.encode(&*pkcs8));
        secrets.push(hex(&pkcs8));
        // The 32-byte private scalar (P-256) or seed (Ed25519): the OCTET STRING `04 20 ...`.
        if r.alg != Alg::RS256 {
            let at = pkcs8.windows(2).position(|w| w == [0x04, 0x20]).unwrap() + 2;
            let scalar = &pkcs8[at..at + 32];
            secrets.push(URL_SAFE_NO_PAD.encode(scalar));
            secrets.push(hex(scalar));
        }
    }
    drop(_default);
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("signing key created"), "the log was captured");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret in the logs");
        for a in &answers {
            assert!(!a.contains(secret.as_str()), "a secret in an answer");
        }
    }
}

/// A rotation at once with withdrawal on node A reaches node B through the invalidation channel:
/// B stops publishing (and verifying with) the withdrawn keys without waiting for its scheduled
/// refresh (a minute by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_on_one_node_reaches_the_other_at_once() {
    let db = crate::pg::TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let before = b.jwks_kids().await;
    assert_eq!(before.len(), 3);
    a.state.keys.rotate_now(true).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let now = b.jwks_kids().await;
        if before.iter().all(|k| !now.contains(k)) {
            assert_eq!(now, a.jwks_kids().await, "B publishes A's keys");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "B still publishes withdrawn keys: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
