//! POST /auth/token: client authentication, the code grant, PKCE, client_credentials.

use std::time::Duration;

use authplane::crypto;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn code_flow_for_the_confidential_client() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid profile email").await;
    let res = app.redeem_app(&code).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = json(res).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "email openid profile");
    assert_eq!(s(&body, "access_token").len(), 43);
    // A refresh token is `<family>.<generation>.<secret>`, each random part 256 bits.
    let refresh = s(&body, "refresh_token");
    let parts: Vec<&str> = refresh.split('.').collect();
    assert_eq!(
        (parts.len(), parts[0].len(), parts[1], parts[2].len()),
        (3, 43, "1", 43)
    );
}

#[tokio::test]
async fn code_flow_for_the_public_client() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, SPA, SPA_REDIRECT, "openid").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", SPA),
        ("code", code.as_str()),
        ("redirect_uri", SPA_REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let res = app.token(None, &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert!(body["refresh_token"].is_string());
    let res = app
        .token(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", SPA),
                ("refresh_token", &s(&body, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn client_secret_post_works_and_two_methods_at_once_do_not() {
    let app = spawn_app().await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", APP_SECRET),
    ];
    let res = app.token(None, &ok).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert!(
        body.get("refresh_token").is_none(),
        "client_credentials gets no refresh token"
    );
    assert_eq!(body["scope"], "email openid profile");
    let res = app.token(Some((APP, APP_SECRET)), &ok).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_request");
}

#[tokio::test]
async fn invalid_client_is_always_401_with_basic_challenge_only_for_basic() {
    let app = spawn_app().await;
    let cc = [("grant_type", "client_credentials")];
    for (basic, form, expect_basic) in [
        (Some((APP, "wrong")), cc.to_vec(), true),
        (Some(("nobody", "x")), cc.to_vec(), true),
        (
            None,
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", "wrong"),
            ],
            false,
        ),
        (
            None,
            vec![("grant_type", "client_credentials"), ("client_id", APP)],
            false,
        ),
        (
            None,
            vec![("grant_type", "client_credentials"), ("client_id", "nobody")],
            false,
        ),
        (None, cc.to_vec(), false),
        (
            None,
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", SPA),
                ("client_secret", "x"),
            ],
            false,
        ),
    ] {
        let res = app.token(basic, &form).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{basic:?} {form:?}");
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            www.as_deref().is_some_and(|w| w.starts_with("Basic")),
            expect_basic,
            "{basic:?} {form:?}"
        );
        assert_eq!(json(res).await["error"], "invalid_client");
    }
}

#[tokio::test]
async fn grant_type_errors() {
    let app = spawn_app().await;
    let res = app.token(Some((APP, APP_SECRET)), &[("grant_type", "password")]).await;
    assert_eq!(json(res).await["error"], "unsupported_grant_type");
    let res = app.token(Some((APP, APP_SECRET)), &[("scope", "openid")]).await;
    assert_eq!(json(res).await["error"], "invalid_request");
    let res = app
        .token(None, &[("grant_type", "client_credentials"), ("client_id", SPA)])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "unauthorized_client");
    let res = app
        .token(
            Some((OTHER, OTHER_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    assert_eq!(json(res).await["error"], "unauthorized_client");
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "admin")],
        )
        .await;
    assert_eq!(json(res).await["error"], "invalid_scope");
}

/// A code is bound to its client, redirect_uri and verifier; an exchange that gets one of them
/// wrong is refused and changes nothing: the same code then works with the right request (so a
/// client's mistake, or an attacker holding the stolen code, cannot burn it), once.
#[tokio::test]
async fn code_is_bound_to_client_redirect_uri_and_verifier() {
    let app = spawn_app().await;
    let session = app.login().await;
    let base = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", APP_REDIRECT.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ]
    };
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    let before = tokens_issued(&app.metrics_text().await, None);
    // Another client.
    let form: Vec<(&str, String)> = base(&code);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = app.token(Some((OTHER, OTHER_SECRET)), &form).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
    );
    // A different redirect_uri, none, a wrong verifier, a missing verifier.
    for tweak in [
        ("redirect_uri", "http://127.0.0.1:9000/callback/"),
        ("redirect_uri", ""),
        ("code_verifier", &*"x".repeat(43)),
        ("code_verifier", ""),
    ] {
        let mut form = base(&code);
        form.retain(|(k, _)| *k != tweak.0);
        if !tweak.1.is_empty() {
            form.push((tweak.0, tweak.1.to_owned()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = app.token(Some((APP, APP_SECRET)), &form).await;
        assert_eq!(
            error_of(res).await,
            (StatusCode::BAD_REQUEST, "invalid_grant".to_owned()),
            "{tweak:?}"
        );
    }
    assert_eq!(tokens_issued(&app.metrics_text().await, None), before);
    // The right request: the code was not burned.
    let res = app.redeem_app(&code).await;
    assert_eq!(res.status(), StatusCode::OK);
    let access = s(&json(res).await, "access_token");
    // Once: a second use is a replay, and revokes what the first issued.
    assert_eq!(
        error_of(app.redeem_app(&code).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
    );
    assert_eq!(app.introspect(&access).await["active"], false);
}

#[tokio::test]
async fn pkce_downgrade_is_refused() {
    let app = spawn_app().await;
    let session = app.login().await;
    // A code issued without a challenge, redeemed with a verifier.
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", APP),
                ("redirect_uri", APP_REDIRECT),
            ],
        )
        .await;
    let code = param(&location_params(&res), "code").unwrap();
    let res = app.redeem_app(&code).await;
    assert_eq!(json(res).await["error"], "invalid_grant");
    // A code issued with a challenge, redeemed without a verifier.
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
            ],
        )
        .await;
    assert_eq!(json(res).await["error"], "invalid_grant");
    // Without PKCE at all, the confidential client may redeem.
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", APP),
                ("redirect_uri", APP_REDIRECT),
            ],
        )
        .await;
    let code = param(&location_params(&res), "code").unwrap();
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_verifier_is_invalid_request_and_does_not_burn_the_code() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
                ("code_verifier", "short"),
            ],
        )
        .await;
    assert_eq!(json(res).await["error"], "invalid_request");
    assert_eq!(app.redeem_app(&code).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn codes_expire_after_code_ttl() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    app.advance(Duration::from_secs(61));
    let res = app.redeem_app(&code).await;
    assert_eq!(json(res).await["error"], "invalid_grant");
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_the_first_use_issued() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    let first = json(app.redeem_app(&code).await).await;
    let access = s(&first, "access_token");
    let refresh = s(&first, "refresh_token");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);
    let res = app.redeem_app(&code).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_grant");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access).await["active"], false);
    assert_eq!(app.introspect(&refresh).await["active"], false);
    assert_eq!(json(app.refresh_app(&refresh).await).await["error"], "invalid_grant");
}

#[tokio::test]
async fn fifty_concurrent_redemptions_of_one_code_give_exactly_one_success() {
    let app = spawn_app().await;
    let session = app.login().await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid").await;
    let results = futures::future::join_all((0..50).map(|_| app.redeem_app(&code))).await;
    let ok: Vec<_> = results.iter().filter(|r| r.status() == StatusCode::OK).collect();
    assert_eq!(ok.len(), 1);
    let statuses: Vec<_> = results.iter().map(|r| r.status()).collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn client_secret_verification_is_cached_per_presented_secret() {
    let app = spawn_app().await;
    let secrets = &app.state.clients;
    let before = secrets.secret_cache_report();
    for _ in 0..20 {
        let res = app
            .token(Some((APP, APP_SECRET)), &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let after = secrets.secret_cache_report();
    assert_eq!(
        after.misses - before.misses,
        1,
        "one argon2 verification for twenty requests"
    );
    assert_eq!(after.hits - before.hits, 19);
    // Failures are not cached: each wrong secret is verified (and refused) again.
    for _ in 0..3 {
        let res = app
            .token(Some((APP, "wrong")), &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let wrong = secrets.secret_cache_report();
    assert_eq!(wrong.hits, after.hits, "a wrong secret never hits the cache");
    assert_eq!(crypto::client_secret_key(APP, "a").0.len(), 32);
}
