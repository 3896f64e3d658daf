//! Users and clients managed at runtime (docs/reference.md section 8): the admin API on both
//! stores, its effects on sessions and tokens (invariant 11), its authorisation, and hostile
//! bodies.

use std::time::Duration;

use authplane_testkit::fixture::ALICE_SUB;
use authplane_testkit::{APP, APP_REDIRECT, TestApp, json, s};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::admin_token;

pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

pub async fn create_user(app: &TestApp, token: &str, username: &str, password: &str) -> Value {
    let body = json!({"username": username, "password": password, "name": "Runtime User",
                      "email": format!("{username}@example.test"), "email_verified": true});
    let res = call(app, Method::POST, "/admin/users", Some(token), Some(body)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    json(res).await
}

/// `PATCH /admin/users/{sub}` with `body`.
pub async fn patch_user(app: &TestApp, admin: &str, sub: &str, body: Value) -> reqwest::Response {
    call(
        app,
        Method::PATCH,
        &format!("/admin/users/{sub}"),
        Some(admin),
        Some(body),
    )
    .await
}

/// An authorize request of demo-app for a code, with `session`.
async fn authorize_code(app: &TestApp, session: &str) -> reqwest::Response {
    let pkce = authplane_testkit::oauth::Pkce::fixed();
    let query = [
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", APP_REDIRECT),
        ("scope", "openid"),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ];
    app.authorize(Some(session), &query).await
}

/// Where a redirect answer sends the browser.
fn location(res: &reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::FOUND);
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// The code flow for demo-app as `username`: (access, refresh).
async fn tokens_of(app: &TestApp, username: &str, password: &str) -> (String, String) {
    let session = app.login_as(username, password).await;
    let code = app.code(&session, APP, APP_REDIRECT, "openid profile email").await;
    let res = app.redeem_app(&code).await;
    assert_eq!(res.status(), StatusCode::OK);
    let t = json(res).await;
    (s(&t, "access_token"), s(&t, "refresh_token"))
}

async fn user_count(app: &TestApp, admin: &str) -> usize {
    users_page(app, admin, "?limit=1000").await["users"]
        .as_array()
        .unwrap()
        .len()
}

async fn cc_status(app: &TestApp, id: &str, secret: &str) -> StatusCode {
    app.token(Some((id, secret)), &[("grant_type", "client_credentials")])
        .await
        .status()
}

async fn users_page(app: &TestApp, token: &str, query: &str) -> Value {
    let res = call(app, Method::GET, &format!("/admin/users{query}"), Some(token), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

async fn assert_user_lifecycle(app: &TestApp) {
    let admin = admin_token(app).await;
    let user = create_user(app, &admin, "carol", "carol-password-1").await;
    assert!(
        user.get("password").is_none() && user.get("password_hash").is_none(),
        "{user}"
    );
    assert_eq!(user["managed_by"], "api");
    let sub = s(&user, "sub");
    assert_eq!(sub.len(), 36, "a generated UUID: {sub}");

    // The new user logs in and their claims are served.
    let (access, _) = tokens_of(app, "carol", "carol-password-1").await;
    let info = json(app.userinfo(&access).await).await;
    assert_eq!(info["sub"], sub.as_str());
    assert_eq!(info["email"], "carol@example.test");

    let res = call(app, Method::GET, &format!("/admin/users/{sub}"), Some(&admin), None).await;
    assert_eq!(json(res).await["username"], "carol");
    let listed = users_page(app, &admin, "").await;
    let subs: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["sub"].as_str().unwrap())
        .collect();
    assert!(subs.contains(&sub.as_str()) && subs.contains(&ALICE_SUB), "{listed}");

    // The username and the sub are unique, the config file's included.
    let dup = json!({"username": "carol", "password": "another-password"});
    let res = call(app, Method::POST, "/admin/users", Some(&admin), Some(dup)).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = call(
        app,
        Method::POST,
        "/admin/users",
        Some(&admin),
        Some(json!({"username": "alice", "password": "another-password"})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(json(res).await["error"], "managed_by_config");

    // Deleted: its token stops at once, it cannot log in, it is gone.
    let res = call(app, Method::DELETE, &format!("/admin/users/{sub}"), Some(&admin), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access).await["active"], false);
    assert_eq!(
        app.login_response("carol", "carol-password-1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = call(app, Method::GET, &format!("/admin/users/{sub}"), Some(&admin), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_user_created_at_runtime_logs_in_and_its_deletion_takes_effect_at_once() {
    assert_user_lifecycle(&authplane_testkit::spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_at_runtime_on_postgres() {
    let db = crate::pg::TestDb::new().await;
    assert_user_lifecycle(&db.spawn(|_| {}).await).await;
}

#[tokio::test]
async fn disabling_a_user_ends_its_sessions_and_tokens_and_refuses_its_logins() {
    let app = authplane_testkit::spawn_app().await;
    let admin = admin_token(&app).await;
    let sub = s(&create_user(&app, &admin, "dave", "dave-password-1").await, "sub");
    let session = app.login_as("dave", "dave-password-1").await;
    let (access, refresh) = tokens_of(&app, "dave", "dave-password-1").await;
    app.advance(Duration::from_millis(5));

    let res = patch_user(&app, &admin, &sub, json!({"disabled": true})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["disabled"], true);

    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access).await["active"], false);
    assert_eq!(app.introspect(&refresh).await["active"], false);
    let res = app.refresh_app(&refresh).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_grant");
    // The old session no longer speaks for the user: authorize asks for a login.
    let res = authorize_code(&app, &session).await;
    assert!(location(&res).contains("/auth/login"), "{:?}", res.headers());
    assert_eq!(
        app.login_response("dave", "dave-password-1").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The cascade revoked the grant in the store: enabled again, the old tokens stay dead.
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    let res = patch_user(&app, &admin, &sub, json!({"disabled": false})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.introspect(&refresh).await["active"], false);
    app.advance(Duration::from_millis(5));
    let (fresh, _) = tokens_of(&app, "dave", "dave-password-1").await;
    assert_eq!(app.userinfo(&fresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_ends_the_sessions_from_before_it_only() {
    let app = authplane_testkit::spawn_app().await;
    let admin = admin_token(&app).await;
    let sub = s(&create_user(&app, &admin, "erin", "erin-password-1").await, "sub");
    let (access, refresh) = tokens_of(&app, "erin", "erin-password-1").await;
    app.advance(Duration::from_millis(5));
    let res = patch_user(&app, &admin, &sub, json!({"password": "erin-password-2", "name": null})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(json(res).await.get("name").is_none(), "null removes the claim");
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.refresh_app(&refresh).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.login_response("erin", "erin-password-1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.advance(Duration::from_millis(5));
    let (access, refresh) = tokens_of(&app, "erin", "erin-password-2").await;
    // The queued cascade revokes only the grants from before the change.
    app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK);
    assert_eq!(app.refresh_app(&refresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn config_users_and_clients_are_read_only_through_the_api() {
    let app = authplane_testkit::spawn_app().await;
    let admin = admin_token(&app).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/admin/users/{ALICE_SUB}"),
            Some(json!({"disabled": true})),
        ),
        (Method::DELETE, format!("/admin/users/{ALICE_SUB}"), None),
        (Method::DELETE, format!("/admin/clients/{APP}"), None),
    ] {
        let res = call(&app, method.clone(), &path, Some(&admin), body).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "{method} {path}");
        assert_eq!(json(res).await["error"], "managed_by_config");
    }
    let res = call(
        &app,
        Method::GET,
        &format!("/admin/users/{ALICE_SUB}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(json(res).await["managed_by"], "config");
    let res = call(&app, Method::GET, &format!("/admin/clients/{APP}"), Some(&admin), None).await;
    let client = json(res).await;
    assert_eq!(client["managed_by"], "config");
    assert!(
        client.get("client_secret").is_none() && client.get("secret_hash").is_none(),
        "{client}"
    );
    let (access, _) = tokens_of(&app, "alice", authplane_testkit::fixture::ALICE_PASSWORD).await;
    assert_eq!(app.userinfo(&access).await.status(), StatusCode::OK, "nothing changed");
}

#[tokio::test]
async fn pagination_stays_stable_while_users_are_added() {
    let app = authplane_testkit::spawn_app().await;
    let admin = admin_token(&app).await;
    let add = |sub: String| {
        let (app, admin) = (&app, &admin);
        async move {
            let body = json!({"username": format!("user-{sub}"), "password": "a-long-password", "sub": sub});
            let res = call(app, Method::POST, "/admin/users", Some(admin), Some(body)).await;
            assert_eq!(res.status(), StatusCode::CREATED);
        }
    };
    for i in [1, 3, 5, 7, 9] {
        add(format!("p-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = users_page(&app, &admin, &query).await;
        for u in page["users"].as_array().unwrap() {
            seen.push(s(u, "sub"));
        }
        pages += 1;
        if pages == 1 {
            // Added while paging: one before the cursor (not shown: already passed), one after.
            add("p-0".into()).await;
            add("p-8".into()).await;
        }
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "in sub order, each once");
    for sub in ["p-1", "p-3", "p-5", "p-7", "p-8", "p-9", ALICE_SUB] {
        assert!(seen.iter().any(|s| s == sub), "{sub} in {seen:?}");
    }
    assert!(
        !seen.iter().any(|s| s == "p-0"),
        "added before the cursor: not shown on a later page"
    );
    let res = call(&app, Method::GET, "/admin/users?limit=0", Some(&admin), None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = call(&app, Method::GET, "/admin/users?limit=5000", Some(&admin), None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_bodies_are_400_with_the_field_named_and_change_nothing() {
    let app = authplane_testkit::spawn_app().await;
    let admin = admin_token(&app).await;
    let before = user_count(&app, &admin).await;
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let raw = |b: String| {
        let (app, admin) = (&app, &admin);
        async move {
            app.client
                .post(app.url("/admin/users"))
                .bearer_auth(admin)
                .header("content-type", "application/json")
                .body(b)
                .send()
                .await
                .unwrap()
        }
    };
    let res = raw("x".repeat(64 * 1024)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for (body, field) in [
        (nested, "body"),
        (r#"{"username": 1, "password": "long-enough"}"#.to_owned(), "body"),
        (
            r#"{"username": "zed", "password": "long-enough", "role": "root"}"#.to_owned(),
            "body",
        ),
        (r#"{"username": "zed"}"#.to_owned(), "body"),
        (
            r#"{"username": "a b", "password": "long-enough"}"#.to_owned(),
            "username",
        ),
        (r#"{"username": "zed", "password": "short"}"#.to_owned(), "password"),
        (
            r#"{"username": "zed", "password": "long-enough", "email": "not-an-email"}"#.to_owned(),
            "email",
        ),
        (
            r#"{"username": "zed", "password": "long-enough", "sub": "has space"}"#.to_owned(),
            "sub",
        ),
        (
            format!(r#"{{"username": "{}", "password": "long-enough"}}"#, "u".repeat(5000)),
            "username",
        ),
    ] {
        let res = raw(body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{}", &body[..body.len().min(80)]);
        let e = json(res).await;
        assert_eq!(e["error"], "invalid_request");
        assert!(s(&e, "error_description").starts_with(&format!("{field}:")), "{e}");
    }
    assert_eq!(user_count(&app, &admin).await, before, "nothing was created");

    // Hostile changes to a runtime user: 400, and the user is as it was.
    let sub = s(&create_user(&app, &admin, "ivy", "ivy-password-1").await, "sub");
    let path = format!("/admin/users/{sub}");
    let before = json(call(&app, Method::GET, &path, Some(&admin), None).await).await;
    for (body, field) in [
        (json!({"disabled": "yes"}), "body"),
        (json!({"username": "renamed"}), "body"),
        (json!({"name": 5}), "body"),
        (json!({"email": "no"}), "email"),
        (json!({"password": "short"}), "password"),
        (json!({"name": "ok", "extra": true}), "body"),
    ] {
        let res = call(&app, Method::PATCH, &path, Some(&admin), Some(body.clone())).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let e = json(res).await;
        assert!(s(&e, "error_description").starts_with(&format!("{field}:")), "{e}");
        assert!(
            !e.to_string().contains("yes") || field != "body",
            "no value echoed: {e}"
        );
    }
    let after = json(call(&app, Method::GET, &path, Some(&admin), None).await).await;
    assert_eq!(after, before, "nothing changed");
    app.login_as("ivy", "ivy-password-1").await;
}

#[tokio::test]
async fn only_a_valid_admin_token_may_call_the_admin_api() {
    let app = authplane_testkit::spawn_app().await;
    let (user_token, _) = tokens_of(&app, "alice", authplane_testkit::fixture::ALICE_PASSWORD).await;
    let admin = admin_token(&app).await;
    let body = json!({"username": "mallory", "password": "mallory-password"});
    let res = call(&app, Method::POST, "/admin/users", None, Some(body.clone())).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = call(
        &app,
        Method::POST,
        "/admin/users",
        Some(&user_token),
        Some(body.clone()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = call(
        &app,
        Method::DELETE,
        &format!("/admin/clients/{APP}"),
        Some(&user_token),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    app.advance(Duration::from_secs(16 * 60));
    let res = call(&app, Method::POST, "/admin/users", Some(&admin), Some(body)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "expired admin token");
    assert_eq!(
        app.login_response("mallory", "mallory-password").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Invariant 11 across nodes: a user created on A logs in on B at once; disabled on A, B refuses
/// its tokens within the invalidation window; a client deleted on A is `invalid_client` on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_on_one_postgres_node_reach_the_other() {
    let db = crate::pg::TestDb::new().await;
    let (a, b) = (db.spawn(|_| {}).await, db.spawn(|_| {}).await);
    let admin = admin_token(&a).await;
    let sub = s(&create_user(&a, &admin, "frank", "frank-password-1").await, "sub");
    // B may have cached "no such user" for the sub; it never asked, and a login asks the store.
    let (access, _) = tokens_of(&b, "frank", "frank-password-1").await;
    assert_eq!(b.userinfo(&access).await.status(), StatusCode::OK, "cached on B now");
    let session = b.login_as("frank", "frank-password-1").await;
    let res = patch_user(&a, &admin, &sub, json!({"disabled": true})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let start = std::time::Instant::now();
    while b.userinfo(&access).await.status() == StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B still serves a disabled user's token"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("user disabled on A refused on B after {:?}", start.elapsed());
    // B's session of the user asks for a new login now, which B refuses.
    let res = authorize_code(&b, &session).await;
    assert!(location(&res).contains("/auth/login"), "{:?}", res.headers());
    assert_eq!(
        b.login_response("frank", "frank-password-1").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let reg = crate::registration::register(
        &a,
        Some(&admin),
        json!({"grant_types": ["client_credentials"], "scope": "profile"}),
    )
    .await;
    let (id, secret) = (s(&reg, "client_id"), s(&reg, "client_secret"));
    assert_eq!(
        cc_status(&b, &id, &secret).await,
        StatusCode::OK,
        "registered on A, known on B"
    );
    let res = call(&a, Method::DELETE, &format!("/admin/clients/{id}"), Some(&admin), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let start = std::time::Instant::now();
    while cc_status(&b, &id, &secret).await == StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B still accepts a deleted client"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        cc_status(&b, &id, &secret).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client"
    );
}

/// Two nodes whose config files differ (README, multi-node): a user only in A's file exists on A
/// only; B's admin API may create a database user with that name, which serves on B while A keeps
/// its file's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_files_win_on_their_own_node() {
    use authplane_testkit::fixture::{BOB, BOB_PASSWORD};
    let db = crate::pg::TestDb::new().await;
    let a = db.spawn(|_| {}).await;
    let mut cfg = db.config(|_| {});
    cfg.users.retain(|u| u.username != BOB);
    let b = authplane_testkit::spawn_with(cfg, None).await;
    assert_eq!(a.login_response(BOB, BOB_PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        b.login_response(BOB, BOB_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let admin = admin_token(&b).await;
    let on_a = admin_token(&a).await;
    let res = call(
        &a,
        Method::POST,
        "/admin/users",
        Some(&on_a),
        Some(json!({"username": BOB, "password": "database-bob"})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "A's file has bob");
    create_user(&b, &admin, BOB, "database-bob").await;
    assert_eq!(b.login_response(BOB, "database-bob").await.status(), StatusCode::OK);
    assert_eq!(
        a.login_response(BOB, "database-bob").await.status(),
        StatusCode::UNAUTHORIZED,
        "A's file wins on A"
    );
    assert_eq!(a.login_response(BOB, BOB_PASSWORD).await.status(), StatusCode::OK);
}

/// A grant made after a password change from a login before it (what a node that had not heard
/// of the change yet could make) is as void as that login: its tokens are refused, and the
/// cascade revokes it. A cascade that fails (the store is unreachable) stays queued and is done
/// by a later run.
#[tokio::test]
async fn a_grant_from_an_old_login_dies_with_it_and_a_failed_cascade_is_retried() {
    use std::sync::Arc;

    use authplane::crypto::{generate_grant_id, generate_refresh_token, generate_token};
    use authplane::domain::Scope;
    use authplane::store::{AccessTokenRecord, GrantRecord, RefreshTokenRecord, Store};

    use crate::test_store::{NORMAL, TestStore, UNAVAILABLE};

    let store = Arc::new(TestStore::default());
    let app = authplane_testkit::spawn_with(authplane_testkit::test_config(|_| {}), Some(store.clone())).await;
    let admin = admin_token(&app).await;
    let sub = s(&create_user(&app, &admin, "hank", "hank-password-1").await, "sub");
    let login = app.clock.now();
    app.advance(Duration::from_millis(5));
    let change = json!({"password": "hank-password-2"});
    assert_eq!(patch_user(&app, &admin, &sub, change).await.status(), StatusCode::OK);
    app.advance(Duration::from_millis(5));

    let now = app.clock.now();
    let grant = GrantRecord {
        resources: Default::default(),
        id: generate_grant_id(),
        client_id: APP.into(),
        sub: sub.as_str().into(),
        scope: Scope::parse("openid profile").unwrap(),
        created_at: now,
        expires_at: now.plus(Duration::from_secs(3600)),
        revoked_at: None,
        auth_time: Some(login),
        sid: None,
    };
    let access = generate_token();
    let access_record = AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        hash: access.hash,
        client_id: grant.client_id.clone(),
        sub: Some(grant.sub.clone()),
        scope: grant.scope.clone(),
        grant_id: Some(grant.id),
        issued_at: now,
        expires_at: now.plus(Duration::from_secs(600)),
        revoked_at: None,
    };
    let refresh = generate_refresh_token();
    let refresh_record = RefreshTokenRecord {
        jkt: None,
        resources: Default::default(),
        family: refresh.family,
        hash: refresh.hash,
        generation: refresh.generation,
        client_id: grant.client_id.clone(),
        sub: grant.sub.clone(),
        scope: grant.scope.clone(),
        grant_id: grant.id,
        issued_at: now,
        expires_at: grant.expires_at,
        auth_time: grant.auth_time,
        sid: None,
    };
    store
        .inner
        .insert_grant_tokens(&grant, &access_record, Some(&refresh_record))
        .await
        .unwrap();
    assert_eq!(app.userinfo(&access.value).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.introspect(&access.value).await["active"], false);
    assert_eq!(app.introspect(&refresh.value).await["active"], false);
    assert_eq!(app.refresh_app(&refresh.value).await.status(), StatusCode::BAD_REQUEST);

    // The queued cascade: refused by the store, kept; then done.
    let tokens = &app.state.tokens;
    let queued = tokens.revocations().len();
    assert!(queued >= 1);
    store.set_mode(UNAVAILABLE);
    assert!(tokens.purge_pending(100, app.clock.now()).await.is_err());
    assert_eq!(tokens.revocations().len(), queued, "the failed cascade is still queued");
    store.set_mode(NORMAL);
    assert!(tokens.purge_pending(100, app.clock.now()).await.unwrap() >= queued);
    let stored = store.inner.get_grant(&grant.id).await.unwrap().unwrap();
    assert!(
        stored.revoked_at.is_some(),
        "the cascade revoked the grant of the old login"
    );
}
