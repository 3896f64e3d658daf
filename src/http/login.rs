//! `GET/POST /auth/login` and `POST /auth/logout`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{HeadersAndForm, Query, wants_html, wants_json};
use crate::http::pages;
use crate::service::{ClientRegistry, SessionService};
use crate::state::WebConfig;

pub const SESSION_COOKIE: &str = "authplane_session";

pub async fn page(State(clients): State<ClientRegistry>, Query(q): Query) -> Response {
    // `login_hint` (OpenID Connect Core 3.1.2.1) pre-fills the username; authorize bounded it.
    let hint = q.get("login_hint").filter(|h| h.len() <= 256);
    let return_to = q.get("return_to").filter(|r| valid_return_to(r));
    let app = match return_to {
        Some(r) => client_name(&clients, r).await,
        None => None,
    };
    pages::respond(StatusCode::OK, pages::login(return_to, hint, app.as_deref(), None))
}

/// The name of the client an authorize request (`return_to`) is for, when it is a known one.
async fn client_name(clients: &ClientRegistry, return_to: &str) -> Option<String> {
    let query = return_to.split_once('?')?.1;
    let id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "client_id")?
        .1;
    let client = clients.get(&id).await.ok().flatten()?;
    Some(
        client
            .client_name
            .clone()
            .unwrap_or_else(|| client.client_id.to_string()),
    )
}

pub async fn login(
    State(sessions): State<SessionService>,
    State(clients): State<ClientRegistry>,
    State(web): State<Arc<WebConfig>>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    HeadersAndForm(headers, mut form): HeadersAndForm,
) -> Result<Response, ApiError> {
    refuse_cross_site(&headers, &web)?;
    form.reject_duplicates(&["username", "password", "return_to"])?;
    let return_to = form.take("return_to").filter(|r| valid_return_to(r));
    let (Some(username), Some(password)) = (form.take("username"), form.take("password")) else {
        return Err(ApiError::InvalidRequest("username and password are required"));
    };
    let browser = wants_html(&headers);
    // The socket's address: behind a proxy, that is the proxy's (see README, brute force).
    let address = peer.map(|Extension(ConnectInfo(a))| a.ip());
    let session = match sessions.login(&username, password, address, clock.now()).await {
        Ok(s) => s,
        Err(ApiError::InvalidCredentials) if browser => {
            let app = match return_to.as_deref() {
                Some(r) => client_name(&clients, r).await,
                None => None,
            };
            let page = pages::login(
                return_to.as_deref(),
                Some(&username),
                app.as_deref(),
                Some("Wrong username or password."),
            );
            return Ok(pages::respond(StatusCode::UNAUTHORIZED, page));
        }
        Err(e) => return Err(e),
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{}",
        session.value,
        session.expires_in,
        if web.secure_cookie { "; Secure" } else { "" }
    );
    let mut res = match return_to {
        Some(to) if !wants_json(&headers) => Redirect::to(&to).into_response(),
        _ => Json(json!({ "session_expires_in": session.expires_in })).into_response(),
    };
    let headers = res.headers_mut();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Only a same-origin path back into the authorization endpoint: never an absolute URL, a
/// scheme-relative `//host`, or anything with control characters or backslashes.
pub fn valid_return_to(r: &str) -> bool {
    (r == "/auth/authorize" || r.starts_with("/auth/authorize?"))
        && !r.bytes().any(|b| b.is_ascii_control() || b == b'\\' || b == b' ')
}

/// Login CSRF defence. `Sec-Fetch-Site` decides when present (`same-origin` and `none` pass);
/// without it, an `Origin` must be the issuer's or the request's own host. A request with
/// neither (an API client) passes.
pub(crate) fn refuse_cross_site(headers: &HeaderMap, web: &WebConfig) -> Result<(), ApiError> {
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => {
                tracing::info!(target: "security", site, "cross-site login post refused");
                Err(ApiError::CrossSite)
            }
        };
    }
    let Some(origin) = get("origin") else {
        return Ok(());
    };
    let host_origin = |scheme: &str| get("host").map(|h| format!("{scheme}://{h}"));
    if origin == web.issuer_origin
        || Some(origin) == host_origin("http").as_deref()
        || Some(origin) == host_origin("https").as_deref()
    {
        return Ok(());
    }
    tracing::info!(target: "security", "login post from another origin refused");
    Err(ApiError::CrossSite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_stay_on_the_authorize_endpoint() {
        assert!(valid_return_to("/auth/authorize?client_id=x"));
        assert!(valid_return_to("/auth/authorize"));
        for bad in [
            "https://evil.example/auth/authorize",
            "//evil.example",
            "/auth/authorizex",
            "/auth/login",
            "/auth/authorize?\r\nSet-Cookie:x",
            "/auth/authorize?a\\b",
        ] {
            assert!(!valid_return_to(bad), "{bad}");
        }
    }
}
