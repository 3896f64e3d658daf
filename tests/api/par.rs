//! Pushed authorization requests (RFC 9126) over a real listening server: a `request_uri` is the
//! pushed parameters, used once, by its client, within `--par-ttl`, on any node; pushes are
//! checked as authorize would check them; a client may be required to push; a DPoP proof at
//! the push binds the code.

use std::time::Duration;

use authplane::store::RecordKind;
use authplane_testkit::fixture::{PARTNER, PARTNER_REDIRECT, PARTNER_SECRET};
use reqwest::StatusCode;

use crate::dpop::DpopKey;
use crate::helpers::*;
use crate::pg::TestDb;

const APP_CLIENT: (&str, &str) = (APP, APP_SECRET);

/// demo-app's authorize parameters (PKCE as the test kit makes it), `extra` replacing or added.
fn params<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let mut p = vec![
        ("response_type", "code".to_owned()),
        ("redirect_uri", APP_REDIRECT.to_owned()),
        ("scope", "openid profile".to_owned()),
        ("state", "pushed-state".to_owned()),
        ("code_challenge", Pkce::fixed().challenge),
        ("code_challenge_method", "S256".to_owned()),
    ];
    for (k, v) in extra {
        match p.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = (*v).to_owned(),
            None => p.push((k, (*v).to_owned())),
        }
    }
    p
}

async fn push(app: &TestApp, client: (&str, &str), form: &[(&str, String)]) -> reqwest::Response {
    app.client
        .post(app.url("/auth/par"))
        .basic_auth(client.0, Some(client.1))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Pushes `form` as demo-app; returns the `request_uri`.
async fn pushed(app: &TestApp, form: &[(&str, String)]) -> String {
    let res = push(app, APP_CLIENT, form).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = json(res).await;
    assert_eq!(body["expires_in"], 60);
    let uri = s(&body, "request_uri");
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"), "{uri}");
    uri
}

async fn authorize_pushed(app: &TestApp, session: Option<&str>, client: &str, uri: &str) -> reqwest::Response {
    app.authorize(session, &[("client_id", client), ("request_uri", uri)])
        .await
}

fn pushed_records(app: &TestApp) -> usize {
    app.store
        .as_ref()
        .unwrap()
        .records()
        .unwrap()
        .of(RecordKind::PushedRequests)
}

#[tokio::test]
async fn a_pushed_request_authorizes_once_with_its_own_parameters() {
    let app = spawn_app().await;
    let meta = discovery(&app).await;
    assert!(s(&meta, "pushed_authorization_request_endpoint").ends_with("/auth/par"));
    let session = app.login().await;
    let uri = pushed(&app, &params(&[])).await;
    // Parameters outside the request_uri are ignored (RFC 9126 section 4).
    let res = app
        .authorize(
            Some(&session),
            &[
                ("client_id", APP),
                ("request_uri", &uri),
                ("redirect_uri", "https://evil.example/cb"),
                ("scope", "email"),
                ("state", "outer"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(APP_REDIRECT), "{location}");
    let p = location_params(&res);
    assert_eq!(param(&p, "state").as_deref(), Some("pushed-state"));
    let code = param(&p, "code").expect("a code");
    let t = json(app.redeem_app(&code).await).await;
    assert_eq!(t["scope"], "openid profile", "the pushed scope");

    // Once.
    let res = authorize_pushed(&app, Some(&session), APP, &uri).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
}

#[tokio::test]
async fn an_expired_a_foreign_or_an_unknown_request_uri_is_refused_without_redirect() {
    let app = spawn_app().await;
    let session = app.login().await;
    // Another client's.
    let uri = pushed(&app, &params(&[])).await;
    let res = authorize_pushed(&app, Some(&session), OTHER, &uri).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
    // Refusing it did not spend it: its own client still can.
    let res = authorize_pushed(&app, Some(&session), APP, &uri).await;
    assert!(param(&location_params(&res), "code").is_some());
    // Expired.
    let uri = pushed(&app, &params(&[])).await;
    app.advance(Duration::from_secs(61));
    let res = authorize_pushed(&app, Some(&session), APP, &uri).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
    // Unknown.
    let res = authorize_pushed(&app, Some(&session), APP, "urn:ietf:params:oauth:request_uri:nope").await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
    // The sweeper removes the expired ones.
    app.advance(Duration::from_secs(61));
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(pushed_records(&app), 0);
}

#[tokio::test]
async fn a_push_is_checked_as_authorize_would_and_stores_nothing_when_refused() {
    let app = spawn_app().await;
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, (&'a str, &'a str), StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "unregistered redirect_uri",
            params(&[("redirect_uri", "https://evil.example/cb")]),
            APP_CLIENT,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a scope not the client's",
            params(&[("scope", "admin")]),
            APP_CLIENT,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            "PKCE plain",
            params(&[("code_challenge_method", "plain")]),
            APP_CLIENT,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a request_uri inside",
            params(&[("request_uri", "urn:ietf:params:oauth:request_uri:x")]),
            APP_CLIENT,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "another client's client_id",
            params(&[("client_id", OTHER)]),
            APP_CLIENT,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "a wrong secret",
            params(&[]),
            (APP, "wrong"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "a resource not the client's",
            params(&[("resource", "https://api.example.test")]),
            APP_CLIENT,
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
    ];
    for (what, form, client, status, error) in cases {
        let res = push(&app, client, &form).await;
        assert_eq!(error_of(res).await, (status, error.to_owned()), "{what}");
    }
    let res = app
        .client
        .post(app.url("/auth/par"))
        .form(&params(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into()),
        "no client"
    );
    assert_eq!(pushed_records(&app), 0, "nothing stored");
}

#[tokio::test]
async fn a_client_that_must_push_is_refused_other_requests() {
    let app = spawn_app().await;
    let session = app.login().await;
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", PAR_APP),
                ("scope", "openid"),
                ("state", "s"),
            ],
        )
        .await;
    let p = location_params(&res);
    assert_eq!(param(&p, "error").as_deref(), Some("invalid_request"));
    assert!(param(&p, "code").is_none());
    let form = vec![("response_type", "code".to_owned()), ("scope", "openid".to_owned())];
    let res = push(&app, (PAR_APP, APP_SECRET), &form).await;
    let uri = s(&json(res).await, "request_uri");
    let res = authorize_pushed(&app, Some(&session), PAR_APP, &uri).await;
    assert!(param(&location_params(&res), "code").is_some());
}

/// The browser's way through login with a pushed request that asks for a new login: it does not
/// come back asking again.
#[tokio::test]
async fn a_pushed_request_survives_the_login_it_asks_for() {
    let app = spawn_app().await;
    let uri = pushed(&app, &params(&[("prompt", "login")])).await;
    let session = app.login().await;
    let res = authorize_pushed(&app, Some(&session), APP, &uri).await;
    let login = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(login.starts_with("/auth/login?"), "{login}");
    let return_to = url::form_urlencoded::parse(login.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let res = app.browser_login(ALICE, ALICE_PASSWORD, &return_to).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    let fresh = session_cookie(res.headers()).expect("a new session");
    let res = app
        .client
        .get(app.url(&back))
        .header("cookie", session_header(&fresh))
        .send()
        .await
        .unwrap();
    let p = location_params(&res);
    assert!(param(&p, "code").is_some(), "{:?}", res.headers().get("location"));
    assert_eq!(param(&p, "state").as_deref(), Some("pushed-state"));
}

#[tokio::test]
async fn a_dpop_proof_at_the_push_binds_the_code() {
    let app = spawn_issuer(|_| {}).await;
    let key = DpopKey::es256();
    let session = app.login().await;
    let push_bound = |proof: String| {
        let app = &app;
        async move {
            let res = app
                .client
                .post(app.url("/auth/par"))
                .basic_auth(APP, Some(APP_SECRET))
                .header("DPoP", proof)
                .form(&params(&[]))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED);
            s(&json(res).await, "request_uri")
        }
    };
    let uri = push_bound(key.proof(&app, "POST", "/auth/par", None)).await;
    let code = param(
        &location_params(&authorize_pushed(&app, Some(&session), APP, &uri).await),
        "code",
    )
    .unwrap();
    let exchange = |proof: Option<String>| {
        let (app, code) = (&app, &code);
        async move {
            let mut req = app
                .client
                .post(app.url("/auth/token"))
                .basic_auth(APP, Some(APP_SECRET));
            if let Some(proof) = proof {
                req = req.header("DPoP", proof);
            }
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", APP_REDIRECT),
                ("code_verifier", VERIFIER),
            ];
            req.form(&form).send().await.unwrap()
        }
    };
    // Without a proof, or with one of another key: refused, and the code is not burned.
    let other = DpopKey::es256();
    for proof in [None, Some(other.proof(&app, "POST", "/auth/token", None))] {
        assert_eq!(
            error_of(exchange(proof).await).await,
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
        );
    }
    let res = exchange(Some(key.proof(&app, "POST", "/auth/token", None))).await;
    assert_eq!(json(res).await["token_type"], "DPoP");
    // A proof for another endpoint is refused at the push.
    let res = app
        .client
        .post(app.url("/auth/par"))
        .basic_auth(APP, Some(APP_SECRET))
        .header("DPoP", key.proof(&app, "POST", "/auth/token", None))
        .form(&params(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_dpop_proof".into())
    );
}

#[tokio::test]
async fn a_request_pushed_to_one_node_authorizes_once_on_any() {
    let db = TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let session = a.login().await;
    let uri = pushed(&a, &params(&[])).await;
    let res = authorize_pushed(&b, Some(&session), APP, &uri).await;
    let code = param(&location_params(&res), "code").expect("a code on the other node");
    assert_eq!(a.redeem_app(&code).await.status(), StatusCode::OK);
    let res = authorize_pushed(&a, Some(&session), APP, &uri).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
}

/// The `return_to` of an authorize answer that sends the browser to the login page.
fn to_login(res: &reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::FOUND);
    let login = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(login.starts_with("/auth/login?"), "{login}");
    param(&authplane_testkit::oauth::query_pairs(&login), "return_to").unwrap()
}

/// Logs in at the login page (as a browser, with its `return_to`); the authorize answer the
/// browser then gets, and the new session.
async fn log_in_and_come_back(app: &TestApp, return_to: &str) -> (reqwest::Response, String) {
    let res = app.browser_login(ALICE, ALICE_PASSWORD, return_to).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(back, return_to);
    let session = session_cookie(res.headers()).expect("a session");
    let res = app
        .client
        .get(app.url(&back))
        .header("cookie", session_header(&session))
        .send()
        .await
        .unwrap();
    (res, session)
}

/// `--par-ttl` is how long a client has to send the browser on with its `request_uri`; once the
/// pushed request has sent the browser to the login page, it lives on for the login (ten
/// minutes), still once and for its own client only.
#[tokio::test]
async fn a_pushed_request_outlives_a_slow_login_but_not_an_abandoned_one() {
    let app = spawn_with(test_config(|s| s.par_ttl = Some("5s".parse().unwrap())), None).await;
    let push_short = || {
        let app = &app;
        async move {
            let res = push(app, APP_CLIENT, &params(&[])).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            let body = json(res).await;
            assert_eq!(body["expires_in"], 5);
            s(&body, "request_uri")
        }
    };
    // Not used within --par-ttl: expired.
    let unused = push_short().await;
    app.advance(Duration::from_secs(6));
    assert_eq!(
        error_of(authorize_pushed(&app, None, APP, &unused).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );

    // Two minutes at the login page, and a sweep meanwhile: the code is issued.
    let uri = push_short().await;
    let return_to = to_login(&authorize_pushed(&app, None, APP, &uri).await);
    app.advance(Duration::from_secs(120));
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(pushed_records(&app), 1, "the sweeper keeps a request under way");
    // Still its own client's only.
    assert_eq!(
        error_of(authorize_pushed(&app, None, OTHER, &uri).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
    let (res, session) = log_in_and_come_back(&app, &return_to).await;
    let p = location_params(&res);
    assert_eq!(param(&p, "state").as_deref(), Some("pushed-state"));
    let code = param(&p, "code").expect("a code after a slow login");
    assert_eq!(app.redeem_app(&code).await.status(), StatusCode::OK);
    // Once.
    assert_eq!(
        error_of(authorize_pushed(&app, Some(&session), APP, &uri).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );

    // A login abandoned for longer than the interaction lifetime: expired.
    let uri = push_short().await;
    let return_to = to_login(&authorize_pushed(&app, None, APP, &uri).await);
    app.advance(Duration::from_secs(10 * 60 + 1));
    let (res, _) = log_in_and_come_back(&app, &return_to).await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
}

/// A pushed request the user denies at the consent page is used up by that answer: the client
/// gets `access_denied`, and the same `request_uri` cannot start the authorization again.
#[tokio::test]
async fn a_pushed_request_denied_at_the_consent_page_is_used_up() {
    use crate::consent::{consent_page, decide, to_consent};

    let app = spawn_app().await;
    let form = params(&[("redirect_uri", PARTNER_REDIRECT), ("scope", "openid")]);
    let res = push(&app, (PARTNER, PARTNER_SECRET), &form).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let uri = s(&json(res).await, "request_uri");
    let session = app.login().await;
    let return_to = to_consent(&authorize_pushed(&app, Some(&session), PARTNER, &uri).await);
    let (_, tag) = consent_page(&app, &session, &return_to).await;
    let res = decide(&app, &session, &return_to, &tag, "deny", "same-origin").await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(PARTNER_REDIRECT), "{location}");
    assert_eq!(param(&location_params(&res), "error").as_deref(), Some("access_denied"));
    assert_eq!(
        error_of(authorize_pushed(&app, Some(&session), PARTNER, &uri).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request_uri".into())
    );
}

/// `prompt=login consent` pushed by a third-party client the user consented to before: the
/// login spends `login` only, so the consent page still comes, once.
#[tokio::test]
async fn a_pushed_prompt_login_consent_asks_for_the_login_and_then_the_consent() {
    use crate::consent::{consent_page, decide, follow, to_consent};

    let app = spawn_app().await;
    let partner = (PARTNER, PARTNER_SECRET);
    let form = |prompt: &str| {
        let mut f = params(&[("redirect_uri", PARTNER_REDIRECT), ("scope", "openid")]);
        if !prompt.is_empty() {
            f.push(("prompt", prompt.to_owned()));
        }
        f
    };
    let pushed_by_partner = |prompt: &'static str| {
        let app = &app;
        async move {
            let res = push(app, partner, &form(prompt)).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            s(&json(res).await, "request_uri")
        }
    };
    // Consent given before, to a pushed request.
    let session = app.login().await;
    let uri = pushed_by_partner("").await;
    let return_to = to_consent(&authorize_pushed(&app, Some(&session), PARTNER, &uri).await);
    let (_, tag) = consent_page(&app, &session, &return_to).await;
    let res = decide(&app, &session, &return_to, &tag, "allow", "same-origin").await;
    assert!(param(&location_params(&follow(&app, &session, &res).await), "code").is_some());
    // Remembered: without a prompt, no page.
    let uri = pushed_by_partner("").await;
    let res = authorize_pushed(&app, Some(&session), PARTNER, &uri).await;
    assert!(param(&location_params(&res), "code").is_some());

    // prompt=login consent: the login page, then the consent page, then the code.
    let uri = pushed_by_partner("login consent").await;
    let return_to = to_login(&authorize_pushed(&app, Some(&session), PARTNER, &uri).await);
    let (res, fresh) = log_in_and_come_back(&app, &return_to).await;
    let return_to = to_consent(&res);
    let (_, tag) = consent_page(&app, &fresh, &return_to).await;
    let res = decide(&app, &fresh, &return_to, &tag, "allow", "same-origin").await;
    let res = follow(&app, &fresh, &res).await;
    let p = location_params(&res);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(PARTNER_REDIRECT)
    );
    let code = param(&p, "code").expect("a code after the login and the consent");
    assert_eq!(
        app.redeem(partner, PARTNER_REDIRECT, &code).await.status(),
        StatusCode::OK
    );
}

/// A push is bounded: its parameters, form-encoded, take at most 8 KiB; a larger one is
/// `invalid_request` and stores nothing.
#[tokio::test]
async fn an_oversized_push_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let session = app.login().await;
    let before = tokens_issued(&app.metrics_text().await, None);
    for (what, field) in [("state", "state"), ("nonce", "nonce"), ("login_hint", "login_hint")] {
        let big = "a".repeat(9 * 1024);
        let res = push(&app, APP_CLIENT, &params(&[(field, &big)])).await;
        assert_eq!(
            error_of(res).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{what}"
        );
    }
    // Many fields, each small, that add up.
    let chunk = "b".repeat(500);
    let mut form = params(&[("state", &chunk), ("nonce", &chunk)]);
    for _ in 0..16 {
        form.push(("resource", format!("https://api.example.test/{chunk}")));
    }
    assert_eq!(
        error_of(push(&app, APP_CLIENT, &form).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    assert_eq!(pushed_records(&app), 0, "nothing stored");
    assert_eq!(tokens_issued(&app.metrics_text().await, None), before);
    // A large state within the bound is kept and echoed exactly.
    let state = "s".repeat(7 * 1024);
    let uri = pushed(&app, &params(&[("state", &state)])).await;
    let res = authorize_pushed(&app, Some(&session), APP, &uri).await;
    let p = location_params(&res);
    assert_eq!(param(&p, "state").as_deref(), Some(state.as_str()));
    assert!(param(&p, "code").is_some());
}

/// `/auth/par` is a hot endpoint like `/auth/token` (invariant 8): with `--max-inflight` pushes
/// running and `--queue-capacity` waiting, the next is answered at once with 503, without
/// touching the store.
#[tokio::test]
async fn a_full_par_endpoint_sheds_at_once_without_touching_the_store() {
    use std::sync::atomic::Ordering;

    let (app, store) = crate::overload::two_running_two_waiting().await;
    let form = params(&[]);
    let mut running = Vec::new();
    for _ in 0..4 {
        let req = app
            .client
            .post(app.url("/auth/par"))
            .basic_auth(APP, Some(APP_SECRET))
            .form(&form);
        running.push(tokio::spawn(req.send()));
    }
    store.until_waiting(2).await;
    until_queue(&app, "/auth/par", |q| q["in_flight"] == 2 && q["waiting"] == 2).await;
    let calls = store.calls.load(Ordering::SeqCst);
    crate::overload::assert_shed_before_the_store(push(&app, APP_CLIENT, &form).await, &store, calls).await;
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"authplane_requests_shed_total{route="/auth/par"} 1"#),
        "{metrics}"
    );
    store.release();
    for r in running {
        assert_eq!(
            r.await.unwrap().unwrap().status(),
            StatusCode::CREATED,
            "every admitted push is answered"
        );
    }
}
