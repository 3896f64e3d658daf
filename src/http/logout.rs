//! `POST /auth/logout` and RP-initiated logout, `GET`/`POST /auth/end-session`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{HeadersAndForm, Params, Query, cookie};
use crate::http::login::{SESSION_COOKIE, refuse_cross_site};
use crate::http::pages;
use crate::service::logout::{EndSessionRequest, LogoutService};
use crate::state::WebConfig;

/// The parameters end-session reads; repeating any of them is `invalid_request`.
const END_SESSION_PARAMS: &[&str] = &[
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "confirm",
];

pub async fn logout(
    State(logout): State<LogoutService>,
    State(web): State<Arc<WebConfig>>,
    State(clock): State<Clock>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    refuse_cross_site(&headers, &web)?;
    logout.logout(cookie(&headers, SESSION_COOKIE), clock.now()).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    clear_cookie(&mut res, &web)?;
    Ok(res)
}

/// RP-Initiated Logout 1.0. With a valid `id_token_hint` the session ends at once; without
/// one, a GET shows a confirmation page whose form posts back here (`confirm=yes`), protected
/// against cross-site posts like the login form. Then 303 to the registered
/// `post_logout_redirect_uri` with `state`, or a page that says the user is signed out. A bad
/// request (a hint that is not ours, an unregistered URI) is an error page, never a redirect.
pub async fn end_session_get(
    State(logout): State<LogoutService>,
    State(web): State<Arc<WebConfig>>,
    State(clock): State<Clock>,
    headers: HeaderMap,
    Query(params): Query,
) -> Result<Response, ApiError> {
    end_session(&logout, &web, &clock, Method::GET, &headers, params).await
}

pub async fn end_session_post(
    State(logout): State<LogoutService>,
    State(web): State<Arc<WebConfig>>,
    State(clock): State<Clock>,
    HeadersAndForm(headers, params): HeadersAndForm,
) -> Result<Response, ApiError> {
    end_session(&logout, &web, &clock, Method::POST, &headers, params).await
}

async fn end_session(
    logout: &LogoutService,
    web: &WebConfig,
    clock: &Clock,
    method: Method,
    headers: &HeaderMap,
    mut params: Params,
) -> Result<Response, ApiError> {
    if params.duplicated(END_SESSION_PARAMS).next().is_some() {
        return Ok(pages::bad_request(&ApiError::InvalidRequest(
            "a parameter was given more than once",
        )));
    }
    let confirm = params.take("confirm");
    let req = EndSessionRequest {
        id_token_hint: params.take("id_token_hint"),
        client_id: params.take("client_id"),
        post_logout_redirect_uri: params.take("post_logout_redirect_uri"),
        state: params.take("state"),
    };
    let checked = match logout.check(&req).await {
        Ok(c) => c,
        Err(e @ ApiError::InvalidRequest(_)) => return Ok(pages::bad_request(&e)),
        Err(e) => return Err(e),
    };
    let confirmed = method == Method::POST && confirm.as_deref() == Some("yes");
    if confirmed {
        refuse_cross_site(headers, web)?;
    }
    if !checked.confirmed_by_hint && !confirmed {
        let fields: Vec<(&str, &str)> = [
            ("client_id", &req.client_id),
            ("post_logout_redirect_uri", &req.post_logout_redirect_uri),
            ("state", &req.state),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
        let page = pages::confirm_logout(checked.client_name.as_deref(), &fields);
        return Ok(pages::respond(StatusCode::OK, page));
    }
    logout.logout(cookie(headers, SESSION_COOKIE), clock.now()).await?;
    let mut res = match &checked.redirect {
        Some(to) => Redirect::to(to).into_response(),
        None => pages::respond(StatusCode::OK, pages::logged_out()),
    };
    clear_cookie(&mut res, web)?;
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn clear_cookie(res: &mut Response, web: &WebConfig) -> Result<(), ApiError> {
    let clear = format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
        if web.secure_cookie { "; Secure" } else { "" }
    );
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).map_err(ApiError::internal)?,
    );
    Ok(())
}
