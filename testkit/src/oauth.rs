//! The small OAuth client that the tests, the benches and the load tool all speak: the session
//! cookie, PKCE pairs, client authentication and the code in a redirect. Plain functions over
//! `http` types, so that reqwest responses and router responses both fit.

use axum::http::header::{self, HeaderMap, HeaderValue, InvalidHeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The name of the server's login session cookie.
pub const SESSION_COOKIE: &str = "authplane_session";

/// RFC 7636 appendix B's verifier: a fixed PKCE verifier for tests that want a known value.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A PKCE S256 pair.
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A fresh random verifier (43 URL-safe characters) and its challenge.
    pub fn generate() -> Self {
        Self::from_verifier(authplane::crypto::generate_token().value)
    }

    /// The pair of [`VERIFIER`].
    pub fn fixed() -> Self {
        Self::from_verifier(VERIFIER.to_owned())
    }

    fn from_verifier(verifier: String) -> Self {
        let challenge = authplane::crypto::pkce_challenge(&verifier);
        Self { verifier, challenge }
    }
}

/// The value of the session cookie a response sets, if it sets a non-empty one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::SET_COOKIE).iter().find_map(|v| {
        let rest = v.to_str().ok()?.strip_prefix(SESSION_COOKIE)?.strip_prefix('=')?;
        let value = rest.split(';').next()?;
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The `Cookie` header value that presents `session`.
pub fn session_header(session: &str) -> String {
    format!("{SESSION_COOKIE}={session}")
}

/// The query pairs of a redirect target, absolute or relative.
pub fn query_pairs(location: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(location).or_else(|_| url::Url::parse("http://x").and_then(|base| base.join(location)));
    url.map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// One query parameter of a redirect target.
pub fn query_param(location: &str, name: &str) -> Option<String> {
    query_pairs(location)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The authorization code of a response's `Location`.
pub fn code_from_location(headers: &HeaderMap) -> Option<String> {
    query_param(headers.get(header::LOCATION)?.to_str().ok()?, "code")
}

/// `Authorization: Basic` for a client; id and secret are form-urlencoded before Base64
/// (RFC 6749 section 2.3.1).
pub fn basic_auth(client_id: &str, secret: &str) -> Result<HeaderValue, InvalidHeaderValue> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(secret));
    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_matches_rfc_7617() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame").unwrap(),
            // The secret is form-urlencoded first (RFC 6749 2.3.1): the space becomes '+'.
            HeaderValue::from_static("Basic QWxhZGRpbjpvcGVuK3Nlc2FtZQ==")
        );
    }

    #[test]
    fn reads_code_and_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://127.0.0.1:9000/callback?code=abc&state=load&iss=x"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("other=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("authplane_session_x=no"));
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("authplane_session=s3cr; HttpOnly; Path=/"),
        );
        assert_eq!(code_from_location(&h).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&h).as_deref(), Some("s3cr"));
    }

    #[test]
    fn an_emptied_cookie_is_no_session() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("authplane_session=; Max-Age=0"),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn relative_locations_have_query_pairs_too() {
        assert_eq!(query_param("/auth/login?next=a%20b", "next").as_deref(), Some("a b"));
    }

    #[test]
    fn the_fixed_pair_is_rfc_7636_appendix_b() {
        assert_eq!(Pkce::fixed().challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(Pkce::generate().verifier.len(), 43);
    }
}
