//! `GET`/`POST /auth/userinfo` (OIDC Core 5.3). The token comes in the Authorization header, or
//! (POST only) as `access_token` in a form body (RFC 6750 section 2.2); both at once is
//! `invalid_request`.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{Form, bearer_token};
use crate::service::TokenService;

pub async fn userinfo(
    State(tokens): State<TokenService>,
    State(clock): State<Clock>,
    req: Request,
) -> Result<Response, ApiError> {
    // GET (the hot case) borrows the token from the header; only POST reads a body.
    if req.method() != Method::POST {
        let token = bearer_token(req.headers())?.ok_or(ApiError::MissingToken)?;
        return respond(tokens.userinfo(token, clock.now()).await?);
    }
    let from_header = bearer_token(req.headers())?.map(str::to_owned);
    let Form(mut form) = Form::from_request(req, &()).await?;
    form.reject_duplicates(&["access_token"])?;
    let token = match (from_header, form.take("access_token")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest("the token was sent in more than one way"));
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(ApiError::MissingToken),
    };
    respond(tokens.userinfo(&token, clock.now()).await?)
}

fn respond(claims: crate::service::tokens::UserInfo) -> Result<Response, ApiError> {
    let mut res = Json(claims).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
