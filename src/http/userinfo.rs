//! `GET`/`POST /auth/userinfo` (OIDC Core 5.3). The token comes in the Authorization header, or
//! (POST only) as `access_token` in a form body (RFC 6750 section 2.2); both at once is
//! `invalid_request`. A DPoP-bound token comes as `Authorization: DPoP` with a `DPoP` proof
//! (RFC 9449 section 7).

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{Form, access_token, dpop_proof};
use crate::service::TokenService;
use crate::service::tokens::Presented;

pub async fn userinfo(
    State(tokens): State<TokenService>,
    State(clock): State<Clock>,
    req: Request,
) -> Result<Response, ApiError> {
    // GET (the hot case) borrows the token from the header; only POST reads a body.
    if req.method() != Method::POST {
        let (dpop_scheme, token) = access_token(req.headers())?.ok_or(ApiError::MissingToken)?;
        let presented = Presented {
            dpop_scheme,
            proof: proof(req.headers())?,
            method: req.method().as_str(),
        };
        return respond(tokens.userinfo(token, presented, clock.now()).await?);
    }
    let from_header = access_token(req.headers())?.map(|(dpop, t)| (dpop, t.to_owned()));
    let dpop = proof(req.headers())?.map(str::to_owned);
    let Form(mut form) = Form::from_request(req, &()).await?;
    form.reject_duplicates(&["access_token"])?;
    let (dpop_scheme, token) = match (from_header, form.take("access_token")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest("the token was sent in more than one way"));
        }
        (Some(h), None) => h,
        (None, Some(t)) => (false, t),
        (None, None) => return Err(ApiError::MissingToken),
    };
    let presented = Presented {
        dpop_scheme,
        proof: dpop.as_deref(),
        method: "POST",
    };
    respond(tokens.userinfo(&token, presented, clock.now()).await?)
}

/// The `DPoP` proof header at a resource: a bad one is a 401 there.
fn proof(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    dpop_proof(headers).map_err(|_| ApiError::InvalidDpopProof { at_resource: true })
}

fn respond(claims: crate::service::tokens::UserInfo) -> Result<Response, ApiError> {
    let mut res = crate::http::json(&claims);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
