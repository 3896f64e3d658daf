//! `GET`/`POST /auth/consent`: the consent page of third-party clients.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{HeadersAndForm, Query, cookie};
use crate::http::login::{SESSION_COOKIE, refuse_cross_site, valid_return_to};
use crate::http::pages;
use crate::service::AuthorizeService;
use crate::state::WebConfig;

pub async fn page(
    State(service): State<AuthorizeService>,
    State(clock): State<Clock>,
    headers: HeaderMap,
    Query(mut q): Query,
) -> Result<Response, ApiError> {
    let Some(return_to) = q.take("return_to").filter(|r| valid_return_to(r)) else {
        return Ok(pages::bad_request(&ApiError::InvalidRequest(
            "return_to must be an authorization request",
        )));
    };
    match service
        .consent_page(cookie(&headers, SESSION_COOKIE), &return_to, clock.now())
        .await
    {
        Ok(page) => Ok(pages::respond(StatusCode::OK, pages::consent(&page))),
        Err(e) => shown(e),
    }
}

pub async fn decide(
    State(service): State<AuthorizeService>,
    State(web): State<Arc<WebConfig>>,
    State(clock): State<Clock>,
    HeadersAndForm(headers, mut form): HeadersAndForm,
) -> Result<Response, ApiError> {
    refuse_cross_site(&headers, &web)?;
    form.reject_duplicates(&["return_to", "tag", "decision"])?;
    let (Some(return_to), Some(tag)) = (form.take("return_to").filter(|r| valid_return_to(r)), form.take("tag")) else {
        return Ok(pages::bad_request(&ApiError::InvalidRequest(
            "the consent form is incomplete",
        )));
    };
    let allow = match form.take("decision").as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Ok(pages::bad_request(&ApiError::InvalidRequest(
                "decision must be allow or deny",
            )));
        }
    };
    match service
        .consent_decision(cookie(&headers, SESSION_COOKIE), &return_to, &tag, allow, clock.now())
        .await
    {
        Ok(to) => Ok(Redirect::to(&to).into_response()),
        Err(e) => shown(e),
    }
}

/// Client-facing errors as a page; the rest (503, 500) as usual.
fn shown(e: ApiError) -> Result<Response, ApiError> {
    match e {
        ApiError::LoginRequired => Ok(pages::bad_request(&ApiError::InvalidRequest(
            "your session has ended: sign in again from the application",
        ))),
        ApiError::CrossSite => Ok(pages::respond(
            StatusCode::FORBIDDEN,
            pages::error("This consent form was not made for this request."),
        )),
        e @ ApiError::InvalidRequest(_) => Ok(pages::bad_request(&e)),
        e => Err(e),
    }
}
