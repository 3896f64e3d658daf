//! `GET /auth/authorize`.

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{Params, Query, cookie};
use crate::http::login::SESSION_COOKIE;
use crate::service::consent::after_forced_login;
use crate::service::{AuthorizeOutcome, AuthorizeRequest, AuthorizeService};

/// The parameters authorize reads; repeating any of them is `invalid_request`.
pub(crate) const AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "nonce",
    "max_age",
    "login_hint",
    "id_token_hint",
    "request",
    "request_uri",
    "response_mode",
    "dpop_jkt",
];

pub async fn authorize(
    State(service): State<AuthorizeService>,
    State(clock): State<Clock>,
    Query(mut q): Query,
    // The request itself, not axum's `HeaderMap` and `Uri` extractors: they copy both.
    request: Request,
) -> Result<Response, ApiError> {
    let (Parts { headers, uri, .. }, _) = request.into_parts();
    let req = authorize_request(&mut q);
    let location = match service
        .authorize(req, cookie(&headers, SESSION_COOKIE), clock.now())
        .await?
    {
        AuthorizeOutcome::Redirect(to) => to,
        AuthorizeOutcome::Consent => {
            let here = uri.path_and_query().map_or("/auth/authorize", |p| p.as_str());
            const CONSENT: &str = "/auth/consent?";
            url::form_urlencoded::Serializer::for_suffix(String::from(CONSENT), CONSENT.len())
                .append_pair("return_to", here)
                .finish()
        }
        AuthorizeOutcome::Login {
            login_hint,
            forced,
            kept_prompt,
        } => {
            let here = uri.path_and_query().map_or("/auth/authorize", |p| p.as_str());
            // The way back must not force the login again; it keeps the rest of `prompt`.
            let here = match forced {
                true => after_forced_login(here, kept_prompt.as_deref()),
                false => here.to_owned(),
            };
            const LOGIN: &str = "/auth/login?";
            let mut login = url::form_urlencoded::Serializer::for_suffix(String::from(LOGIN), LOGIN.len());
            login.append_pair("return_to", &here);
            if let Some(hint) = &login_hint {
                login.append_pair("login_hint", hint);
            }
            login.finish()
        }
    };
    found(&location)
}

/// The authorize parameters of a query (or of a pushed request's form).
pub(crate) fn authorize_request(q: &mut Params) -> AuthorizeRequest {
    AuthorizeRequest {
        duplicated: q.duplicated(AUTHORIZE_PARAMS).map(str::to_owned).collect(),
        response_type: q.take("response_type"),
        client_id: q.take("client_id"),
        redirect_uri: q.take("redirect_uri"),
        scope: q.take("scope"),
        state: q.take("state"),
        code_challenge: q.take("code_challenge"),
        code_challenge_method: q.take("code_challenge_method"),
        prompt: q.take("prompt"),
        nonce: q.take("nonce"),
        max_age: q.take("max_age"),
        login_hint: q.take("login_hint"),
        id_token_hint: q.take("id_token_hint"),
        request: q.take("request"),
        request_uri: q.take("request_uri"),
        response_mode: q.take("response_mode"),
        resources: q.take_all("resource"),
        dpop_jkt: q.take("dpop_jkt"),
    }
}

/// 302 with `Cache-Control: no-store` (a redirect with a code must not be cached).
fn found(location: &str) -> Result<Response, ApiError> {
    let mut res = StatusCode::FOUND.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(location).map_err(ApiError::internal)?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
