//! `POST /auth/par`: pushed authorization requests (RFC 9126). The client authenticates as at
//! the token endpoint and sends the authorize parameters as a form; the answer is 201 with a
//! one-time `request_uri` that `/auth/authorize` takes with the `client_id` within `--par-ttl`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::authorize::{AUTHORIZE_PARAMS, authorize_request};
use crate::http::extract::{HeadersAndForm, client_credentials, dpop_proof};
use crate::http::token::{address, no_store};
use crate::service::{AuthorizeService, ClientRegistry};

/// Client authentication's parameters, which may not repeat either.
const CLIENT_AUTH_PARAMS: &[&str] = &["client_secret", "client_assertion_type", "client_assertion"];

pub async fn par(
    State(clients): State<ClientRegistry>,
    State(authorize): State<AuthorizeService>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    HeadersAndForm(headers, mut form): HeadersAndForm,
) -> Result<Response, ApiError> {
    form.reject_duplicates(AUTHORIZE_PARAMS)?;
    form.reject_duplicates(CLIENT_AUTH_PARAMS)?;
    let now = clock.now();
    // The client_id of the form is the authenticated client's; the service checks it again
    // against the pushed parameters.
    let client_id = form.get("client_id").map(str::to_owned);
    let client = clients
        .authenticate(client_credentials(&headers, &mut form)?, address(peer), now)
        .await?;
    let mut req = authorize_request(&mut form);
    req.client_id = client_id;
    let pushed = authorize.push(&client, req, dpop_proof(&headers)?, now).await?;
    Ok(no_store((StatusCode::CREATED, Json(pushed)).into_response()))
}
