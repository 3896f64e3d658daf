//! `GET/POST /auth/login` and `POST /auth/logout`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::json;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{Form, Query, cookie, wants_html, wants_json};
use crate::service::SessionService;
use crate::state::WebConfig;

pub const SESSION_COOKIE: &str = "authplane_session";

pub async fn page(Query(q): Query) -> Response {
    // `login_hint` (OpenID Connect Core 3.1.2.1) pre-fills the username; authorize bounded it.
    let hint = q.get("login_hint").filter(|h| h.len() <= 256);
    html(
        StatusCode::OK,
        q.get("return_to").filter(|r| valid_return_to(r)),
        hint,
        None,
    )
}

pub async fn login(
    State(sessions): State<SessionService>,
    State(web): State<Arc<WebConfig>>,
    State(clock): State<Clock>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(mut form): Form,
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
            return Ok(html(
                StatusCode::UNAUTHORIZED,
                return_to.as_deref(),
                None,
                Some("Wrong username or password."),
            ));
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

pub async fn logout(
    State(sessions): State<SessionService>,
    State(web): State<Arc<WebConfig>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    refuse_cross_site(&headers, &web)?;
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        sessions.logout(value).await?;
    }
    let clear = format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{}",
        if web.secure_cookie { "; Secure" } else { "" }
    );
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).map_err(ApiError::internal)?,
    );
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
fn refuse_cross_site(headers: &HeaderMap, web: &WebConfig) -> Result<(), ApiError> {
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

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The login form. Security headers (CSP with `frame-ancestors 'none'`, `X-Frame-Options`,
/// `Referrer-Policy`) are added to every HTML answer by the router.
fn html(status: StatusCode, return_to: Option<&str>, username: Option<&str>, error: Option<&str>) -> Response {
    let username = username
        .map(|u| format!(r#" value="{}""#, escape(u)))
        .unwrap_or_default();
    let hidden = return_to
        .map(|r| format!(r#"<input type="hidden" name="return_to" value="{}">"#, escape(r)))
        .unwrap_or_default();
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · authplane</title>
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}label,input,button{{display:block;width:100%;margin:.4rem 0}}input{{padding:.5rem}}button{{padding:.6rem}}.error{{color:#b00020}}</style>
</head><body><main><h1>Sign in</h1>{error}
<form method="post" action="/auth/login">{hidden}
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required autofocus{username}>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></main></body></html>"#
    );
    let mut res = (status, Html(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
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

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<a href=\"x\">'&"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;");
    }
}
