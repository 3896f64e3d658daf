//! Consent for third-party clients: the page, Allow, Deny, remembered, asked again, and a form
//! that cannot be replayed for another request or another user, or posted cross-site.

use authplane_testkit::fixture::{PARTNER, PARTNER_REDIRECT, PARTNER_SECRET};
use authplane_testkit::{BOB, BOB_PASSWORD, TestApp, json, location_params, param};
use reqwest::StatusCode;

pub(crate) fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

async fn authorize(app: &TestApp, session: &str, scope: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let pkce = authplane_testkit::Pkce::fixed();
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", PARTNER),
        ("redirect_uri", PARTNER_REDIRECT),
        ("scope", scope),
        ("state", "st"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    app.authorize(Some(session), &q).await
}

/// The authorize answer sends the browser to the consent page: its `return_to`.
pub(crate) fn to_consent(res: &reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::FOUND);
    let loc = location(res);
    assert!(loc.starts_with("/auth/consent?"), "{loc}");
    param(&authplane_testkit::oauth::query_pairs(&loc), "return_to").unwrap()
}

pub(crate) fn code_of(res: &reqwest::Response) -> Option<String> {
    assert_eq!(res.status(), StatusCode::FOUND, "{:?}", res.headers());
    param(&location_params(res), "code")
}

/// The consent page for `return_to` and its form's tag.
pub(crate) async fn consent_page(app: &TestApp, session: &str, return_to: &str) -> (String, String) {
    let res = app
        .client
        .get(app.url("/auth/consent"))
        .query(&[("return_to", return_to)])
        .header("cookie", authplane_testkit::session_header(session))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let tag = page
        .split(r#"name="tag" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (page, tag)
}

pub(crate) async fn decide(
    app: &TestApp,
    session: &str,
    return_to: &str,
    tag: &str,
    decision: &str,
    site: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/auth/consent"))
        .header("cookie", authplane_testkit::session_header(session))
        .header("sec-fetch-site", site)
        .form(&[("return_to", return_to), ("tag", tag), ("decision", decision)])
        .send()
        .await
        .unwrap()
}

/// Follows a same-origin redirect with the session.
pub(crate) async fn follow(app: &TestApp, session: &str, res: &reqwest::Response) -> reqwest::Response {
    app.client
        .get(app.url(&location(res)))
        .header("cookie", authplane_testkit::session_header(session))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn allow_is_remembered_and_more_scopes_or_prompt_consent_ask_again() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let res = authorize(&app, &session, "openid profile", &[]).await;
    let return_to = to_consent(&res);
    let (page, tag) = consent_page(&app, &session, &return_to).await;
    assert!(page.contains("Partner App wants to access your account"), "{page}");
    assert!(
        page.contains("See your name") && !page.contains("See your email"),
        "{page}"
    );
    assert!(page.contains(r#"value="allow""#) && page.contains(r#"value="deny""#));

    let res = decide(&app, &session, &return_to, &tag, "allow", "same-origin").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = follow(&app, &session, &res).await;
    let code = code_of(&back).expect("a code after Allow");
    let tokens = app.redeem((PARTNER, PARTNER_SECRET), PARTNER_REDIRECT, &code).await;
    assert_eq!(tokens.status(), StatusCode::OK);
    assert!(json(tokens).await["id_token"].is_string());

    // Remembered: the same or fewer scopes skip the page.
    assert!(code_of(&authorize(&app, &session, "openid profile", &[]).await).is_some());
    assert!(code_of(&authorize(&app, &session, "openid", &[]).await).is_some());
    // More scopes, or prompt=consent, ask again.
    let more = to_consent(&authorize(&app, &session, "openid profile email", &[]).await);
    let (page, _) = consent_page(&app, &session, &more).await;
    assert!(page.contains("See your email address"));
    let again = to_consent(&authorize(&app, &session, "openid", &[("prompt", "consent")]).await);
    let (_, tag) = consent_page(&app, &session, &again).await;
    let res = decide(&app, &session, &again, &tag, "allow", "same-origin").await;
    assert!(!location(&res).contains("prompt"), "the way back does not ask again");
    assert!(code_of(&follow(&app, &session, &res).await).is_some());
}

#[tokio::test]
async fn deny_prompt_none_and_first_party_clients() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let res = authorize(&app, &session, "openid", &[("prompt", "none")]).await;
    assert_eq!(
        param(&location_params(&res), "error").as_deref(),
        Some("consent_required")
    );

    let return_to = to_consent(&authorize(&app, &session, "openid", &[]).await);
    let (_, tag) = consent_page(&app, &session, &return_to).await;
    let res = decide(&app, &session, &return_to, &tag, "deny", "same-origin").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let p = location_params(&res);
    assert!(location(&res).starts_with(PARTNER_REDIRECT));
    assert_eq!(param(&p, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&p, "state").as_deref(), Some("st"));
    // Nothing was remembered.
    to_consent(&authorize(&app, &session, "openid", &[]).await);

    // First-party clients never see the page.
    let code = app
        .code(
            &session,
            authplane_testkit::APP,
            authplane_testkit::APP_REDIRECT,
            "openid",
        )
        .await;
    assert!(!code.is_empty());
}

#[tokio::test]
async fn the_form_cannot_be_replayed_elsewhere_or_posted_cross_site() {
    let app = authplane_testkit::spawn_app().await;
    let alice = app.login().await;
    let return_to = to_consent(&authorize(&app, &alice, "openid", &[]).await);
    let (_, tag) = consent_page(&app, &alice, &return_to).await;

    // Cross-site: refused, nothing remembered.
    let res = decide(&app, &alice, &return_to, &tag, "allow", "cross-site").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Another user's session with alice's form.
    let bob = app.login_as(BOB, BOB_PASSWORD).await;
    let res = decide(&app, &bob, &return_to, &tag, "allow", "same-origin").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Another request (wider scope) with this request's tag.
    let other = return_to.replace("scope=openid", "scope=openid+profile+email");
    assert_ne!(other, return_to);
    let res = decide(&app, &alice, &other, &tag, "allow", "same-origin").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A forged tag; no session at all.
    let res = decide(&app, &alice, &return_to, "AAAA", "allow", "same-origin").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .client
        .post(app.url("/auth/consent"))
        .form(&[("return_to", return_to.as_str()), ("tag", &tag), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // None of it gave consent, for alice or bob.
    to_consent(&authorize(&app, &alice, "openid", &[]).await);
    to_consent(&authorize(&app, &bob, "openid", &[]).await);
    // The page itself needs a session and an authorize request of a third-party client.
    let res = app
        .client
        .get(app.url("/auth/consent"))
        .query(&[("return_to", "https://evil.example/")])
        .header("cookie", authplane_testkit::session_header(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// The consent page and its form speak for the session's user only while that user may still
/// log in: disabled between the page and the decision, nothing is remembered.
#[tokio::test]
async fn a_disabled_users_session_neither_sees_nor_gives_consent() {
    use crate::users_admin::{create_user, patch_user};

    let app = authplane_testkit::spawn_app().await;
    let admin = crate::admin::admin_token(&app).await;
    let sub = authplane_testkit::s(&create_user(&app, &admin, "gina", "gina-password-1").await, "sub");
    let session = app.login_as("gina", "gina-password-1").await;
    let return_to = to_consent(&authorize(&app, &session, "openid", &[]).await);
    let (_, tag) = consent_page(&app, &session, &return_to).await;

    let disable = serde_json::json!({"disabled": true});
    let res = patch_user(&app, &admin, &sub, disable).await;
    assert_eq!(res.status(), StatusCode::OK);

    let page = app
        .client
        .get(app.url("/auth/consent"))
        .query(&[("return_to", return_to.as_str())])
        .header("cookie", authplane_testkit::session_header(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(page.text().await.unwrap().contains("sign in again"));
    let res = decide(&app, &session, &return_to, &tag, "allow", "same-origin").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Enabled again (a new login needed, as the old session stays void): the page asks anew,
    // so the refused decision remembered nothing.
    let enable = serde_json::json!({"disabled": false});
    let res = patch_user(&app, &admin, &sub, enable).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.advance(std::time::Duration::from_millis(5));
    let fresh = app.login_as("gina", "gina-password-1").await;
    to_consent(&authorize(&app, &fresh, "openid", &[]).await);
}

/// `prompt=login consent` by URL, with a consent given before: the way back from the login
/// keeps `consent`, so the consent page comes after the login.
#[tokio::test]
async fn prompt_login_consent_asks_for_the_login_and_then_the_consent() {
    let app = authplane_testkit::spawn_app().await;
    let session = app.login().await;
    let return_to = to_consent(&authorize(&app, &session, "openid", &[]).await);
    let (_, tag) = consent_page(&app, &session, &return_to).await;
    let res = decide(&app, &session, &return_to, &tag, "allow", "same-origin").await;
    assert!(code_of(&follow(&app, &session, &res).await).is_some());

    let res = authorize(&app, &session, "openid", &[("prompt", "login consent")]).await;
    let login = location(&res);
    assert!(login.starts_with("/auth/login?"), "{login}");
    let back = param(&authplane_testkit::oauth::query_pairs(&login), "return_to").unwrap();
    let res = app
        .browser_login(authplane_testkit::ALICE, authplane_testkit::ALICE_PASSWORD, &back)
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let fresh = authplane_testkit::session_cookie(res.headers()).unwrap();
    let return_to = to_consent(&follow(&app, &fresh, &res).await);
    let (_, tag) = consent_page(&app, &fresh, &return_to).await;
    let res = decide(&app, &fresh, &return_to, &tag, "allow", "same-origin").await;
    assert!(!location(&res).contains("prompt"), "the way back does not ask again");
    assert!(code_of(&follow(&app, &fresh, &res).await).is_some());
}
