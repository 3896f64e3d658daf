//! Entry points for the fuzz targets (`fuzz/`) and their regression tests
//! (`tests/api/fuzz_regressions.rs`): each feeds arbitrary bytes to a parser that touches client
//! input and panics only if an invariant breaks (a parser itself must never panic; the HTTP entry
//! point must never answer 5xx or a non-OAuth error body). The router is fuzzed with the
//! [fixture](crate::fixture)'s users and clients.

use authplane::HttpService;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use tower::ServiceExt;

use authplane::Config;
use authplane::config::{Settings, parse_file};
use authplane::domain::{CodeChallenge, CodeVerifier, GrantType, Scope};
use authplane::parse::{Params, bearer_token, client_credentials, cookie};

/// Splits `data` at the first NUL: (before, after).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Form bodies and query strings.
pub fn form(data: &[u8]) {
    if let Ok(p) = Params::parse(data) {
        let _ = p.reject_duplicates(&["grant_type", "code", "client_id"]);
        // Whatever was decoded is valid UTF-8 and non-empty.
        for name in ["grant_type", "code", "client_id", "redirect_uri", "scope", "state"] {
            assert!(p.get(name).is_none_or(|v| !v.is_empty()));
        }
    }
}

/// The Authorization header (Basic or Bearer) with a form body: `header NUL body`.
pub fn authorization(data: &[u8]) {
    let (value, body) = split(data);
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value.clone());
    headers.insert(header::COOKIE, value);
    let _ = bearer_token(&headers);
    let _ = cookie(&headers, "authplane_session");
    if let Ok(mut params) = Params::parse(body) {
        let _ = client_credentials(&headers, &mut params);
    }
}

/// Scope strings, PKCE challenges and verifiers, grant types.
pub fn protocol_values(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Some(scope) = Scope::parse(&s) {
        // Display and parse round-trip.
        assert_eq!(Scope::parse(&scope.to_string()), Some(scope));
    }
    if let Some(c) = CodeChallenge::parse(&s) {
        assert_eq!(c.as_str().len(), 43);
    }
    if let Some(v) = CodeVerifier::parse(&s) {
        assert!((43..=128).contains(&v.as_str().len()));
    }
    let _ = GrantType::parse(&s);
}

/// A redirect URI as an operator would register it: in a client of the config file.
pub fn redirect_uri(data: &[u8]) {
    let uri = String::from_utf8_lossy(data).into_owned();
    // A TOML basic string holds any text; its escaping is the toml crate's.
    let quoted = toml::Value::String(uri).to_string();
    let text = format!(
        "[[clients]]\nclient_id = \"c\"\nredirect_uris = [{quoted}]\n\
         grant_types = [\"authorization_code\"]\nscopes = [\"openid\"]\n"
    );
    config_file(text.as_bytes());
}

/// The config file.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(file) = parse_file(std::path::Path::new("fuzz.toml"), &text) {
        let _ = Config::resolve(Settings::default(), file);
    }
}

const PATHS: &[(&str, &str)] = &[
    ("GET", "/auth/authorize"),
    ("POST", "/auth/token"),
    ("POST", "/auth/login"),
    ("POST", "/auth/revoke"),
    ("POST", "/auth/introspect"),
    ("POST", "/auth/userinfo"),
    ("GET", "/auth/userinfo"),
    ("GET", "/auth/login"),
];

/// One request through the real router: `selector authorization NUL query-or-body`. The answer
/// must be below 500, and its body empty or a JSON object with an `error` string when it is an
/// error.
pub async fn http(router: HttpService, data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (method, path) = PATHS[usize::from(selector) % PATHS.len()];
    let (auth, payload) = split(rest);
    let mut req = Request::builder().method(method);
    req = if method == "GET" {
        let query = String::from_utf8_lossy(payload).replace(['#', ' '], "");
        req.uri(format!("{path}?{query}"))
    } else {
        req.uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    };
    if let Ok(v) = HeaderValue::from_bytes(auth) {
        if !auth.is_empty() {
            req = req.header(header::AUTHORIZATION, v);
        }
    }
    let body = if method == "GET" {
        Body::empty()
    } else {
        Body::from(payload.to_vec())
    };
    let Ok(req) = req.body(body) else {
        return;
    };
    let Ok(res) = router.oneshot(req).await;
    let status = res.status();
    assert!(status.as_u16() < 500, "{method} {path} answered {status}");
    if status.is_client_error() {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap_or_default();
        if !bytes.is_empty() && !bytes.starts_with(b"<!doctype html>") {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            assert!(
                v["error"].is_string(),
                "{method} {path} {status}: not an OAuth error body"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The redirect URI target reaches the validation with the bytes it was given, whatever they
    /// hold: the TOML quoting round-trips.
    #[test]
    fn odd_redirect_uris_survive_the_toml_quoting() {
        for uri in ["http://a/\"b\"", "x\ny\\z", "\u{0}\u{1f}\u{7f}'''", "http://a/#f", ""] {
            let quoted = toml::Value::String(uri.to_owned()).to_string();
            let text =
                format!("[[clients]]\nclient_id = \"c\"\nredirect_uris = [{quoted}]\nscopes = []\ngrant_types = []\n");
            let file = parse_file(std::path::Path::new("t.toml"), &text).unwrap();
            assert_eq!(file.clients[0].redirect_uris, [uri]);
            redirect_uri(uri.as_bytes());
        }
    }
}
