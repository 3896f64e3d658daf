//! `POST /auth/token`, `POST /auth/revoke` (RFC 7009), `POST /auth/introspect` (RFC 7662).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::http::extract::{HeadersAndForm, Params, client_credentials, dpop_proof};
use crate::http::json;
use crate::service::tokens::TokenRequest;
use crate::service::{Client, ClientRegistry, TokenService};

/// The parameters each endpoint reads; repeating any of them is `invalid_request`.
pub(crate) const TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
];
pub(crate) const TOKEN_HINT_PARAMS: &[&str] = &[
    "token",
    "token_type_hint",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
];

pub async fn token(
    State(clients): State<ClientRegistry>,
    State(tokens): State<TokenService>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    HeadersAndForm(headers, mut form): HeadersAndForm,
) -> Result<Response, ApiError> {
    form.reject_duplicates(TOKEN_PARAMS)?;
    let now = clock.now();
    let creds = client_credentials(&headers, &mut form)?;
    let client = clients.authenticate(creds, address(peer), now).await?;
    let req = TokenRequest {
        grant_type: form.take("grant_type"),
        code: form.take("code"),
        redirect_uri: form.take("redirect_uri"),
        code_verifier: form.take("code_verifier"),
        refresh_token: form.take("refresh_token"),
        scope: form.take("scope"),
        resources: form.take_all("resource"),
        dpop: dpop_proof(&headers)?.map(str::to_owned),
    };
    let res = tokens.exchange(&client, req, now).await?;
    Ok(no_store(json(&res)))
}

pub async fn revoke(
    State(clients): State<ClientRegistry>,
    State(tokens): State<TokenService>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    HeadersAndForm(headers, form): HeadersAndForm,
) -> Result<Response, ApiError> {
    let now = clock.now();
    let (client, token, hint) = client_and_token(&clients, &headers, form, address(peer), now).await?;
    tokens.revoke(&client, &token, hint.as_deref(), now).await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

pub async fn introspect(
    State(clients): State<ClientRegistry>,
    State(tokens): State<TokenService>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    HeadersAndForm(headers, form): HeadersAndForm,
) -> Result<Response, ApiError> {
    let now = clock.now();
    let (client, token, _hint) = client_and_token(&clients, &headers, form, address(peer), now).await?;
    let res = tokens.introspect(&client, &token, now).await?;
    Ok(no_store(json(&res)))
}

/// Revocation and introspection requests: the authenticated client, `token`, `token_type_hint`.
async fn client_and_token(
    clients: &ClientRegistry,
    headers: &HeaderMap,
    mut form: Params,
    address: Option<IpAddr>,
    now: Timestamp,
) -> Result<(Arc<Client>, String, Option<String>), ApiError> {
    form.reject_duplicates(TOKEN_HINT_PARAMS)?;
    let client = clients
        .authenticate(client_credentials(headers, &mut form)?, address, now)
        .await?;
    let token = form
        .take("token")
        .ok_or(ApiError::InvalidRequest("token is required"))?;
    Ok((client, token, form.take("token_type_hint")))
}

/// The socket's address: behind a proxy, that is the proxy's (see README, brute force).
pub(crate) fn address(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(a))| a.ip())
}

pub(crate) fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}
