//! The HTML pages (login, logout confirmation, logged out, errors), from maud templates: checked
//! at compile time and escaped by default, so nothing a request carries reaches a page as markup.
//! No external assets: one inline stylesheet, allowed by the router's CSP (`style-src
//! 'unsafe-inline'`, nothing else), a layout that works on a phone.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;color:#1d2430;margin:0;\
min-height:100vh;display:flex;align-items:center;justify-content:center;padding:1rem}\
main{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem;width:100%;max-width:24rem}\
h1{font-size:1.4rem;margin:0 0 .25rem}p.sub{color:#5b6576;margin:0 0 1.5rem}\
label{display:block;font-weight:600;margin:.9rem 0 .3rem}\
input{display:block;width:100%;padding:.65rem .75rem;border:1px solid #c8ced8;border-radius:8px;font-size:1rem}\
input:focus{outline:2px solid #3b6fe0;border-color:#3b6fe0}\
button{display:block;width:100%;margin-top:1.4rem;padding:.75rem;border:0;border-radius:8px;font-size:1rem;\
font-weight:600;background:#3b6fe0;color:#fff;cursor:pointer}\
button.secondary{background:#e8ebf0;color:#1d2430;margin-top:.6rem}\
.error{background:#fdecee;color:#9b1c2c;border-radius:8px;padding:.7rem .9rem;margin:0 0 1rem}\
footer{color:#8a93a3;font-size:.8rem;margin-top:1.5rem;text-align:center}\
ul.scopes{padding-left:1.2rem;margin:0 0 .5rem}ul.scopes li{margin:.4rem 0}.scope{color:#8a93a3;font-size:.85rem}";

/// Every page: the document, the style, a card.
fn layout(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · authplane" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                main {
                    (content)
                    footer { "authplane" }
                }
            }
        }
    }
}

/// An HTML answer that no cache keeps.
pub fn respond(status: StatusCode, page: Markup) -> Response {
    let mut res = (status, Html(page.into_string())).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The login form; it posts back with `return_to` (the authorize request to resume).
pub fn login(return_to: Option<&str>, username: Option<&str>, app: Option<&str>, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p.sub {
                @if let Some(app) = app { "to continue to " strong { (app) } }
                @else { "Use your account to continue." }
            }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/auth/login" {
                @if let Some(r) = return_to { input type="hidden" name="return_to" value=(r); }
                label for="username" { "Username" }
                input #username name="username" autocomplete="username" required autofocus[username.is_none()]
                    value=[username];
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required
                    autofocus[username.is_some()];
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// RP-initiated logout without a valid `id_token_hint`: the user confirms (a cross-site link
/// alone never logs anyone out). The form carries the request on.
pub fn confirm_logout(client_name: Option<&str>, fields: &[(&str, &str)]) -> Markup {
    layout(
        "Sign out",
        html! {
            h1 { "Sign out?" }
            p.sub {
                @if let Some(name) = client_name { (name) " asks to sign you out." }
                @else { "You are about to sign out." }
            }
            form method="post" action="/auth/end-session" {
                @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                input type="hidden" name="confirm" value="yes";
                button type="submit" { "Sign out" }
            }
        },
    )
}

/// The consent page: the client by name, each scope in words, Allow and Deny.
pub fn consent(page: &crate::service::consent::ConsentPage) -> Markup {
    layout(
        "Allow access",
        html! {
            h1 { (page.client_name) " wants to access your account" }
            p.sub { "It will be able to:" }
            ul.scopes {
                @for (scope, words) in &page.scopes {
                    li { (words) span.scope { " (" (scope) ")" } }
                }
            }
            form method="post" action="/auth/consent" {
                input type="hidden" name="return_to" value=(page.return_to);
                input type="hidden" name="tag" value=(page.tag);
                button type="submit" name="decision" value="allow" { "Allow" }
                button.secondary type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

pub fn logged_out() -> Markup {
    layout(
        "Signed out",
        html! {
            h1 { "You are signed out" }
            p.sub { "You can close this window." }
        },
    )
}

/// A 400 page for a request a page cannot serve, with the error's fixed description.
pub fn bad_request(e: &crate::error::ApiError) -> Response {
    respond(StatusCode::BAD_REQUEST, error(e.description().unwrap_or("bad request")))
}

/// A request the page cannot serve (shown, never redirected).
pub fn error(message: &str) -> Markup {
    layout(
        "Error",
        html! {
            h1 { "This request cannot be completed" }
            p.error role="alert" { (message) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_request_carries_is_escaped() {
        let page = login(
            Some("/auth/authorize?a=\"><script>"),
            Some("<b>bob</b>"),
            Some("<u>App</u>"),
            None,
        )
        .into_string();
        assert!(
            page.contains("&lt;u&gt;App&lt;/u&gt;") && !page.contains("<u>"),
            "{page}"
        );
        assert!(
            page.contains("value=\"/auth/authorize?a=&quot;&gt;&lt;script&gt;\""),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;bob&lt;/b&gt;") && !page.contains("<script>") && !page.contains("<b>"));
        let page = confirm_logout(Some("<i>x</i>"), &[("state", "\"'<")]).into_string();
        assert!(!page.contains("<i>") && page.contains("&lt;i&gt;"), "{page}");
    }
}
