//! The whole flow driven by an OAuth client library nobody here wrote (the `oauth2` crate), for
//! the confidential and the public demo clients: authorize with PKCE, code exchange, userinfo,
//! refresh, introspection, revocation, client credentials.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, PkceCodeChallenge,
    RedirectUrl, RevocationUrl, Scope, StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;

use crate::helpers::*;

fn http() -> oauth2::reqwest::Client {
    oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Plays the browser: follows the authorize URL with alice's session and returns the code.
async fn browse(app: &TestApp, auth_url: &url::Url, csrf: &CsrfToken) -> String {
    let session = app.login().await;
    let res = app
        .client
        .get(auth_url.as_str())
        .header("cookie", session_header(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let params = location_params(&res);
    assert_eq!(param(&params, "state").as_deref(), Some(csrf.secret().as_str()));
    param(&params, "code").unwrap()
}

#[tokio::test]
async fn confidential_client_full_flow() {
    let app = spawn_app().await;
    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new(APP.into()))
            .set_client_secret(ClientSecret::new(APP_SECRET.into()))
            .set_auth_type(auth_type.clone())
            .set_auth_uri(AuthUrl::new(app.url("/auth/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(app.url("/auth/token")).unwrap())
            .set_revocation_url(RevocationUrl::new(app.url("/auth/revoke")).unwrap())
            .set_introspection_url(IntrospectionUrl::new(app.url("/auth/introspect")).unwrap())
            .set_redirect_uri(RedirectUrl::new(APP_REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, csrf) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let code = browse(&app, &auth_url, &csrf).await;
        let http = http();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{auth_type:?}: {e:?}"));
        let access = tokens.access_token().secret().clone();
        let res = app.userinfo(&access).await;
        assert_eq!(json(res).await["email"], "alice@example.com");
        let refreshed = client
            .exchange_refresh_token(tokens.refresh_token().unwrap())
            .request_async(&http)
            .await
            .unwrap();
        assert_ne!(
            refreshed.refresh_token().unwrap().secret(),
            tokens.refresh_token().unwrap().secret()
        );
        let info = client
            .introspect(refreshed.access_token())
            .request_async(&http)
            .await
            .unwrap();
        assert!(info.active());
        assert_eq!(info.sub(), Some("u-alice"));
        // The library refuses revocation over plain http (RFC 7009 requires TLS), so this one
        // request goes out by hand.
        let revocable: StandardRevocableToken = refreshed.refresh_token().unwrap().into();
        assert!(client.revoke_token(revocable).is_err(), "the library insists on https");
        let res = app
            .revoke((APP, APP_SECRET), refreshed.refresh_token().unwrap().secret())
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let info = client
            .introspect(refreshed.access_token())
            .request_async(&http)
            .await
            .unwrap();
        assert!(!info.active(), "revoking the refresh token revoked the grant");
        let cc = client.exchange_client_credentials().request_async(&http).await.unwrap();
        assert!(cc.refresh_token().is_none());
    }
}

#[tokio::test]
async fn public_client_full_flow() {
    let app = spawn_app().await;
    let client = BasicClient::new(ClientId::new(SPA.into()))
        .set_auth_type(AuthType::RequestBody)
        .set_auth_uri(AuthUrl::new(app.url("/auth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(app.url("/auth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(SPA_REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .set_pkce_challenge(challenge)
        .url();
    let code = browse(&app, &auth_url, &csrf).await;
    let http = http();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        app.userinfo(tokens.access_token().secret()).await.status(),
        StatusCode::OK
    );
    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        app.userinfo(refreshed.access_token().secret()).await.status(),
        StatusCode::OK
    );
}
