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
use crate::http::extract::{Form, Params, client_credentials, dpop_proof};
use crate::service::tokens::TokenRequest;
use crate::service::{Client, ClientRegistry, TokenService};

/// The parameters each endpoint reads; repeating any of them is `invalid_request`.
const TOKEN_PARAMS: &[&str] = &[
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
const TOKEN_HINT_PARAMS: &[&str] = &[
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
    headers: HeaderMap,
    Form(mut form): Form,
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
    Ok(json_no_store(&res, true))
}

pub async fn revoke(
    State(clients): State<ClientRegistry>,
    State(tokens): State<TokenService>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form,
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
    headers: HeaderMap,
    Form(form): Form,
) -> Result<Response, ApiError> {
    let now = clock.now();
    let (client, token, _hint) = client_and_token(&clients, &headers, form, address(peer), now).await?;
    let res = tokens.introspect(&client, &token, now).await?;
    Ok(json_no_store(&res, true))
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

/// Room for a hot answer's JSON: a token answer with a JWT access token, an introspection answer.
/// (axum's `Json` starts at 128 bytes and grows to fit, copying what it wrote each time.)
const JSON_ROOM: usize = 1024;

/// Room for an answer's headers: its own three and the five the edge adds
/// ([`crate::layers::edge`]), so that none of them makes the map grow.
const HEADER_ROOM: usize = 12;

/// A JSON answer no cache may keep: `Cache-Control: no-store`, and with `pragma` the HTTP/1.0
/// `Pragma: no-cache` that RFC 6749 section 5.1 asks of token answers. What axum's `Json` and
/// [`no_store`] give, written into a buffer sized for it.
pub(crate) fn json_no_store<T: serde::Serialize>(value: &T, pragma: bool) -> Response {
    use bytes::BufMut;
    let mut body = bytes::BytesMut::with_capacity(JSON_ROOM).writer();
    if let Err(e) = serde_json::to_writer(&mut body, value) {
        return ApiError::internal(e).into_response();
    }
    let mut res = Response::new(axum::body::Body::from(body.into_inner().freeze()));
    let h = res.headers_mut();
    h.reserve(HEADER_ROOM);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if pragma {
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    res
}

pub(crate) fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}
