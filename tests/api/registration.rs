//! Dynamic client registration (RFC 7591) and management (RFC 7592), driven by client libraries
//! nobody here wrote: the `openidconnect` crate registers, the `oauth2` crate uses the client.

use authplane_testkit::{APP, TestApp, json, s};
use openidconnect::core::{CoreClientRegistrationRequest, CoreGrantType};
use openidconnect::{AccessToken, ClientName, LocalizedClaim, RegistrationUrl};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::admin_token;
use crate::users_admin::call;

/// `POST /auth/register` with `metadata`; the answer, which must be 201.
pub async fn register(app: &TestApp, token: Option<&str>, metadata: Value) -> Value {
    let res = call(app, Method::POST, "/auth/register", token, Some(metadata)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    json(res).await
}

fn http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn client_count(app: &TestApp, admin: &str) -> usize {
    let res = call(app, Method::GET, "/admin/clients?limit=1000", Some(admin), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await["clients"].as_array().unwrap().len()
}

async fn cc_token(app: &TestApp, id: &str, secret: &str) -> Result<String, String> {
    use oauth2::basic::BasicClient;
    use oauth2::{ClientId, ClientSecret, TokenResponse, TokenUrl};
    let client = BasicClient::new(ClientId::new(id.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_token_uri(TokenUrl::new(app.url("/auth/token")).unwrap());
    client
        .exchange_client_credentials()
        .request_async(&http())
        .await
        .map(|t| t.access_token().secret().clone())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn a_client_registered_by_a_library_works_and_manages_itself() {
    // The issuer is the listening address, so registration_client_uri can be followed.
    let app = authplane_testkit::spawn_issuer(|_| {}).await;
    registration_round_trip(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_registered_by_a_library_on_postgres() {
    let db = crate::pg::TestDb::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let cfg = db.config(|s| s.issuer = Some(issuer));
    let app = authplane_testkit::app::spawn_on(cfg, None, Some(listener)).await;
    let id = registration_round_trip(&app).await;
    // Listed with the config file's clients while it lived (checked inside); gone after.
    let admin = admin_token(&app).await;
    let listed = json(call(&app, Method::GET, "/admin/clients", Some(&admin), None).await).await;
    let ids: Vec<&str> = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&id.as_str()) && ids.contains(&APP), "{listed}");
}

/// Registers, uses, reads, updates and deletes a client; returns its id.
async fn registration_round_trip(app: &TestApp) -> String {
    let admin = admin_token(app).await;
    let endpoint = RegistrationUrl::new(app.url("/auth/register")).unwrap();
    let mut name = LocalizedClaim::new();
    name.insert(None, ClientName::new("Registered by a library".into()));
    let registered = CoreClientRegistrationRequest::new(Vec::new(), Default::default())
        .set_grant_types(Some(vec![CoreGrantType::ClientCredentials]))
        .set_client_name(Some(name))
        .set_initial_access_token(Some(AccessToken::new(admin.clone())))
        .register_async(&endpoint, &http())
        .await
        .unwrap();
    let id = registered.client_id().to_string();
    let secret = registered.client_secret().unwrap().secret().clone();
    let token = registered.registration_access_token().unwrap().secret().clone();
    let uri = registered.registration_client_uri().unwrap().to_string();
    let listed = json(call(app, Method::GET, "/admin/clients", Some(&admin), None).await).await;
    assert!(
        listed["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id.as_str() && c["managed_by"] == "registration"),
        "{listed}"
    );
    assert_eq!(uri, app.url(&format!("/auth/register/{id}")));
    let path = uri.strip_prefix(&app.base).unwrap().to_owned();
    assert_eq!(secret.len(), 43, "256 bits, base64url");

    // The oauth2 crate uses the registered client.
    let access = cc_token(app, &id, &secret).await.unwrap();
    assert_eq!(app.introspect(&access).await["client_id"], id.as_str());

    // RFC 7592: read and update with the registration access token, nobody else.
    let res = call(app, Method::GET, &path, Some(&token), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let read = json(res).await;
    assert_eq!(read["client_name"], "Registered by a library");
    assert!(read.get("client_secret").is_none() && read.get("registration_access_token").is_none());
    for wrong in [None, Some("not-the-token"), Some(admin.as_str())] {
        let res = call(app, Method::GET, &path, wrong, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    // Another client's registration token does not open this one.
    let other = register(app, Some(&admin), json!({"grant_types": ["client_credentials"]})).await;
    let res = call(
        app,
        Method::DELETE,
        &path,
        Some(&s(&other, "registration_access_token")),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let rename = json!({"grant_types": ["client_credentials"], "client_name": "Hijacked"});
    let res = call(
        app,
        Method::PUT,
        &path,
        Some(&s(&other, "registration_access_token")),
        Some(rename),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Its own token cannot widen it to admin either.
    let admin_scope = json!({"grant_types": ["client_credentials"], "scope": "profile admin"});
    let res = call(app, Method::PUT, &path, Some(&token), Some(admin_scope)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_client_metadata");
    let read = json(call(app, Method::GET, &path, Some(&token), None).await).await;
    assert_eq!(read["client_name"], "Registered by a library", "unchanged");
    assert!(!read["scope"].as_str().unwrap().contains("admin"));

    let update =
        json!({"client_id": id, "grant_types": ["client_credentials"], "client_name": "Renamed", "scope": "profile"});
    let res = call(app, Method::PUT, &path, Some(&token), Some(update)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated = json(res).await;
    assert_eq!(updated["client_name"], "Renamed");
    assert_eq!(updated["scope"], "profile");
    cc_token(app, &id, &secret).await.expect("the secret stays");

    let res = call(app, Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        cc_token(app, &id, &secret)
            .await
            .unwrap_err()
            .contains("invalid_client")
    );
    assert_eq!(app.introspect(&access).await["active"], false, "its tokens end with it");
    let res = call(app, Method::GET, &path, Some(&token), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    id
}

#[tokio::test]
async fn registered_clients_are_third_party_and_never_admin() {
    let app = authplane_testkit::spawn_app().await;
    let admin = admin_token(&app).await;
    let redirect = "http://127.0.0.1:9000/registered";
    let reg = register(
        &app,
        Some(&admin),
        json!({"redirect_uris": [redirect], "client_name": "Partner <b>App</b>"}),
    )
    .await;
    assert_eq!(reg["scope"], "email openid profile");
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    let id = s(&reg, "client_id");
    // A user's first authorization goes through the consent page.
    let session = app.login().await;
    let pkce = authplane_testkit::oauth::Pkce::fixed();
    let res = app
        .authorize(
            Some(&session),
            &[
                ("response_type", "code"),
                ("client_id", &id),
                ("redirect_uri", redirect),
                ("scope", "openid"),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert!(
        res.headers()["location"].to_str().unwrap().contains("/auth/consent"),
        "{:?}",
        res.headers()
    );
    let res = call(&app, Method::GET, &format!("/admin/clients/{id}"), Some(&admin), None).await;
    assert_eq!(json(res).await["managed_by"], "registration");

    let before = client_count(&app, &admin).await;
    for (metadata, error) in [
        (
            json!({"redirect_uris": [redirect], "scope": "openid admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "scope": "admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": [redirect], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [redirect], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [redirect], "id_token_signed_response_alg": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [redirect], "jwks": {"keys": []}}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": "not-a-list"}), "invalid_client_metadata"),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
    ] {
        let res = call(
            &app,
            Method::POST,
            "/auth/register",
            Some(&admin),
            Some(metadata.clone()),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{metadata}");
        assert_eq!(json(res).await["error"], error, "{metadata}");
    }
    // Hostile bodies: too big, too deep, not JSON.
    for (body, status) in [
        (
            format!(
                r#"{{"redirect_uris": ["{redirect}"], "client_name": "{}"}}"#,
                "x".repeat(20_000)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
            StatusCode::BAD_REQUEST,
        ),
        ("not json".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let res = app
            .client
            .post(app.url("/auth/register"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
    }
    // Without an admin token: nothing registered.
    let ok = json!({"redirect_uris": [redirect]});
    assert_eq!(
        call(&app, Method::POST, "/auth/register", None, Some(ok.clone()))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let session_user = app.app_tokens("openid").await;
    let res = call(
        &app,
        Method::POST,
        "/auth/register",
        Some(&s(&session_user, "access_token")),
        Some(ok),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(client_count(&app, &admin).await, before, "nothing registered");
}

#[tokio::test]
async fn open_registration_needs_no_initial_token() {
    let app = authplane_testkit::spawn_issuer(|s| s.open_registration = Some(true)).await;
    let reg = register(
        &app,
        None,
        json!({"redirect_uris": ["com.example.app:/cb"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert!(reg.get("client_secret").is_none(), "a public client has no secret");
    // Anyone may register a client users consent to; nobody gets machine tokens that way, at
    // registration or later with the registration token.
    let cc = json!({"grant_types": ["client_credentials"], "scope": "profile"});
    let res = call(&app, Method::POST, "/auth/register", None, Some(cc)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let e = json(res).await;
    assert_eq!(e["error"], "invalid_client_metadata");
    assert!(s(&e, "error_description").contains("initial access token"), "{e}");
    let web = register(&app, None, json!({"redirect_uris": ["https://rp.example/cb"]})).await;
    let path = format!("/auth/register/{}", s(&web, "client_id"));
    let token = s(&web, "registration_access_token");
    let widen = json!({"redirect_uris": ["https://rp.example/cb"],
                       "grant_types": ["authorization_code", "client_credentials"]});
    let res = call(&app, Method::PUT, &path, Some(&token), Some(widen)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let read = json(call(&app, Method::GET, &path, Some(&token), None).await).await;
    assert_eq!(read["grant_types"], json!(["authorization_code"]), "unchanged");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("authplane_admin_actions_total{action=\"client_register\"} 2"),
        "{metrics}"
    );
}
