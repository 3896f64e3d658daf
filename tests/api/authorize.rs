//! GET /auth/authorize.

use authplane::crypto;
use reqwest::StatusCode;

use crate::helpers::*;

fn challenge() -> String {
    crypto::pkce_challenge(VERIFIER)
}

#[tokio::test]
async fn unknown_client_or_unregistered_redirect_is_400_and_never_redirects() {
    let app = spawn_app().await;
    let session = app.login().await;
    let variants = [
        "http://127.0.0.1:9000/callback/",
        "http://127.0.0.1:9000/Callback",
        "HTTP://127.0.0.1:9000/callback?x=1",
        "http://127.0.0.1:9000/callback?x=1",
        "http://127.0.0.1:9001/callback",
        "http://127.0.0.1:9000/callback#frag",
        "http://127.0.0.1:9000/callback/../callback",
        "http://localhost:9000/callback",
        "https://127.0.0.1:9000/callback",
        "http://evil.example/callback",
    ];
    for with_session in [None, Some(session.as_str())] {
        for uri in variants {
            let res = app
                .authorize(
                    with_session,
                    &[("response_type", "code"), ("client_id", APP), ("redirect_uri", uri)],
                )
                .await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert!(res.headers().get("location").is_none());
            assert_eq!(json(res).await["error"], "invalid_request");
        }
        let res = app
            .authorize(
                with_session,
                &[
                    ("response_type", "code"),
                    ("client_id", "nope"),
                    ("redirect_uri", APP_REDIRECT),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers().get("location").is_none());
        let res = app
            .authorize(
                with_session,
                &[("response_type", "code"), ("redirect_uri", APP_REDIRECT)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn redirect_uri_may_be_omitted_only_with_exactly_one_registered() {
    let app = spawn_app().await;
    let session = app.login().await;
    let res = app
        .authorize(Some(&session), &[("response_type", "code"), ("client_id", APP)])
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert!(res.headers()["location"].to_str().unwrap().starts_with(APP_REDIRECT));
    let res = app
        .authorize(Some(&session), &[("response_type", "code"), ("client_id", OTHER)])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn without_a_session_the_browser_goes_to_login_and_comes_back() {
    let app = spawn_app().await;
    let c = challenge();
    let q = [
        ("response_type", "code"),
        ("client_id", SPA),
        ("redirect_uri", SPA_REDIRECT),
        ("scope", "openid"),
        ("state", "s 1"),
        ("code_challenge", c.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let res = app.authorize(None, &q).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with("/auth/login?return_to="), "{loc}");
    let return_to = param(&location_params(&res), "return_to").unwrap();
    assert!(return_to.starts_with("/auth/authorize?"));
    // The login form posts back, and the browser follows to authorize with its new cookie.
    let res = app.browser_login("alice", "wonderland", &return_to).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(res.headers()).unwrap();
    let next = res.headers()["location"].to_str().unwrap().to_owned();
    let res = app
        .client
        .get(app.url(&next))
        .header("cookie", session_header(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let p = location_params(&res);
    assert!(param(&p, "code").is_some());
    assert_eq!(param(&p, "state").as_deref(), Some("s 1"));
}

#[tokio::test]
async fn prompt_none_without_session_is_login_required() {
    let app = spawn_app().await;
    let res = app
        .authorize(
            None,
            &[
                ("response_type", "code"),
                ("client_id", APP),
                ("state", "x"),
                ("prompt", "none"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let p = location_params(&res);
    assert_eq!(param(&p, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&p, "state").as_deref(), Some("x"));
}

#[tokio::test]
async fn request_errors_go_back_to_the_client_with_state() {
    let app = spawn_app().await;
    let session = app.login().await;
    let c = challenge();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("response_type", "token"), ("client_id", APP)],
            "unsupported_response_type",
        ),
        (vec![("client_id", APP)], "invalid_request"),
        (
            vec![("response_type", "code"), ("client_id", APP), ("scope", "openid admin")],
            "invalid_scope",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", OTHER),
                ("redirect_uri", OTHER_REDIRECT),
                ("scope", "email"),
            ],
            "invalid_scope",
        ),
        (vec![("response_type", "code"), ("client_id", SPA)], "invalid_request"),
        (
            vec![
                ("response_type", "code"),
                ("client_id", SPA),
                ("code_challenge", c.as_str()),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", SPA),
                ("code_challenge", c.as_str()),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", SPA),
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", SPA),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            vec![("response_type", "code"), ("response_type", "code"), ("client_id", APP)],
            "invalid_request",
        ),
    ];
    for (mut q, error) in cases {
        q.push(("state", "xyz/+= é"));
        for with_session in [None, Some(session.as_str())] {
            let res = app.authorize(with_session, &q).await;
            assert_eq!(res.status(), StatusCode::FOUND, "{q:?}");
            let p = location_params(&res);
            assert_eq!(param(&p, "error").as_deref(), Some(error), "{q:?}");
            assert!(param(&p, "error_description").is_some());
            assert_eq!(param(&p, "state").as_deref(), Some("xyz/+= é"), "{q:?}");
            assert!(param(&p, "code").is_none());
        }
    }
}

#[tokio::test]
async fn success_returns_a_code_with_the_state_echoed_exactly() {
    let app = spawn_app().await;
    let session = app.login().await;
    let state = "a&b=c d%20+é/?#";
    let c = challenge();
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", SPA),
                ("redirect_uri", SPA_REDIRECT),
                ("scope", "openid profile"),
                ("state", state),
                ("code_challenge", c.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let loc = res.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("http://127.0.0.1:9000/spa?"));
    let p = location_params(&res);
    assert_eq!(param(&p, "state").as_deref(), Some(state));
    assert_eq!(param(&p, "iss").as_deref(), Some("http://127.0.0.1:8080"));
    let code = param(&p, "code").unwrap();
    assert_eq!(code.len(), 43);
}
