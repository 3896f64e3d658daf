//! Extractors that turn raw requests into parameters, with our own rejections: every malformed
//! input becomes an OAuth-format 4xx (never axum's default text). Parsing is strict: broken
//! percent-encoding and non-UTF-8 are `invalid_request`, a parameter given twice is recorded as
//! duplicated, and an empty value counts as absent (RFC 6749 section 3.1).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::authorize::AUTHORIZE_PARAMS;
use super::token::{TOKEN_HINT_PARAMS, TOKEN_PARAMS};
use crate::error::ApiError;
use crate::service::ClientCredentials;

/// `client_assertion_type` of `private_key_jwt` (RFC 7523 section 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Largest form body accepted; OAuth requests are a few hundred bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Decoded `application/x-www-form-urlencoded` parameters.
#[derive(Debug, Default)]
pub struct Params {
    /// foldhash (seeded per process), not SipHash: the names are the client's, but a form is
    /// at most [`MAX_FORM_BYTES`], and this map is made for every request.
    /// The names the endpoints read are kept as static strings ([`known_name`]), not copied.
    values: HashMap<Name, String, foldhash::fast::RandomState>,
    duplicated: Vec<Name>,
    /// The second and later values of repeated parameters, for the one parameter that may
    /// repeat (`resource`, RFC 8707); bounded by the body's size.
    repeats: Vec<(Name, String)>,
}

type Name = Cow<'static, str>;

/// A parameter name as a static string when it is one the endpoints read, so that parsing a form
/// copies only its values (an authorization request has eight names or so). Only a saving: any
/// other name is copied, and is found all the same.
fn known_name(name: &str) -> Option<&'static str> {
    let repeatable: &[&'static str] = &["resource"];
    [AUTHORIZE_PARAMS, TOKEN_PARAMS, TOKEN_HINT_PARAMS, repeatable]
        .into_iter()
        .flatten()
        .find(|known| **known == name)
        .copied()
}

impl Params {
    pub fn parse(input: &[u8]) -> Result<Self, ApiError> {
        // Valid UTF-8 as a whole, so every name and value, split off at an ASCII `&` or `=`, is
        // too: one validation for the whole input, and only a decoded piece needs another.
        let input = std::str::from_utf8(input).map_err(|_| NOT_UTF8)?;
        // Sized for the pairs (bounded: a body of ampersands is no reason to reserve much), so
        // the map does not grow and rehash as an authorization request's parameters arrive.
        let pairs = memchr::memchr_iter(b'&', input.as_bytes()).count() + 1;
        let mut p = Params {
            values: HashMap::with_capacity_and_hasher(pairs.min(32), Default::default()),
            ..Params::default()
        };
        // One walk through the bytes finds each pair's end, its first `=` and whether it has
        // anything to decode; a pair with nothing to decode (most: ids, tokens, codes) is taken
        // as it is. (A search per piece cost more than these few bytes: they are short.)
        let (mut start, mut eq, mut encoded) = (0, None, false);
        for (i, b) in input.bytes().enumerate() {
            match b {
                b'&' => {
                    p.add(&input[start..i], eq.map(|e| e - start), encoded)?;
                    (start, eq, encoded) = (i + 1, None, false);
                }
                b'=' if eq.is_none() => eq = Some(i),
                b'%' | b'+' => encoded = true,
                _ => {}
            }
        }
        p.add(&input[start..], eq.map(|e| e - start), encoded)?;
        Ok(p)
    }

    /// One `name=value` pair (`eq`: where its first `=` is), decoded when `encoded`.
    fn add(&mut self, pair: &str, eq: Option<usize>, encoded: bool) -> Result<(), ApiError> {
        if pair.is_empty() {
            return Ok(());
        }
        let (name, value) = match eq {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        let (name, value) = if encoded {
            (decode_str(name)?, decode_str(value)?)
        } else {
            (Cow::Borrowed(name), Cow::Borrowed(value))
        };
        if value.is_empty() {
            return Ok(());
        }
        let name = match name {
            Cow::Borrowed(n) => known_name(n).map_or_else(|| Cow::Owned(n.to_owned()), Cow::Borrowed),
            Cow::Owned(n) => Cow::Owned(n),
        };
        let value = value.into_owned();
        match self.values.entry(name) {
            Entry::Occupied(e) => {
                if !self.duplicated.contains(e.key()) {
                    self.duplicated.push(e.key().clone());
                }
                self.repeats.push((e.key().clone(), value));
            }
            Entry::Vacant(e) => {
                e.insert(value);
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// Every value of a parameter that may repeat, in order.
    pub fn take_all(&mut self, name: &str) -> Vec<String> {
        let mut all: Vec<String> = self.take(name).into_iter().collect();
        all.extend(self.repeats.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()));
        all
    }

    /// The parameters among `known` that were given more than once. Unknown parameters are
    /// ignored altogether (RFC 6749 section 3.1), repeated or not.
    pub fn duplicated<'a>(&'a self, known: &'a [&str]) -> impl Iterator<Item = &'a str> + 'a {
        self.duplicated.iter().map(|d| &**d).filter(|d| known.contains(d))
    }

    /// `invalid_request` when a parameter of `known` was given twice (RFC 6749 section 3.1).
    pub fn reject_duplicates(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.duplicated(known).next() {
            None => Ok(()),
            Some(_) => Err(ApiError::InvalidRequest("a parameter was given more than once")),
        }
    }
}

const NOT_UTF8: ApiError = ApiError::InvalidRequest("parameters must be UTF-8");

/// Strict form-urlencoded decoding: `+` is a space, `%XY` needs two hex digits, and the result
/// must be UTF-8.
pub fn decode(input: &[u8]) -> Result<String, ApiError> {
    let input = std::str::from_utf8(input).map_err(|_| NOT_UTF8)?;
    decode_str(input).map(Cow::into_owned)
}

/// [`decode`] of a string, borrowing it when there is nothing to decode.
fn decode_str(input: &str) -> Result<Cow<'_, str>, ApiError> {
    let bytes = input.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%' || b == b'+') else {
        return Ok(Cow::Borrowed(input));
    };
    let hex = |i: usize| bytes.get(i).and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(ApiError::InvalidRequest("malformed percent-encoding"));
                };
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| NOT_UTF8)
}

/// The query string's parameters.
pub struct Query(pub Params);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Params::parse(parts.uri.query().unwrap_or("").as_bytes()).map(Query)
    }
}

/// A form body: the content type must be `application/x-www-form-urlencoded` (415 otherwise),
/// the body at most [`MAX_FORM_BYTES`] (413 otherwise). An empty body without a content type is
/// an empty form.
pub struct Form(pub Params);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        form(&parts.headers, body).await.map(Form)
    }
}

/// The request's headers and its form body ([`Form`]'s rules), for the handlers that read both:
/// the headers are moved out of the request, where axum's `HeaderMap` extractor copies the whole
/// map (every request to the token, introspection and revocation endpoints).
pub struct HeadersAndForm(pub HeaderMap, pub Params);

impl<S: Send + Sync> FromRequest<S> for HeadersAndForm {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let params = form(&parts.headers, body).await?;
        Ok(Self(parts.headers, params))
    }
}

async fn form(headers: &HeaderMap, body: Body) -> Result<Params, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE);
    let is_form = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    let body = read_body(body, MAX_FORM_BYTES).await?;
    if !is_form && (content_type.is_some() || !body.is_empty()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    Params::parse(&body)
}

/// The whole body, at most `limit` bytes (413 beyond); a body cut off by its deadline or by
/// shutdown is 408, any other failure to read it 400. A body that came with its headers is one
/// frame and is returned as it is: axum's `to_bytes` collects frames into a list, then copies.
pub async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut first = Bytes::new();
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match caused_by::<crate::server::BodyTimedOut>(&e) {
            true => ApiError::BodyTimeout,
            false => ApiError::InvalidRequest("could not read the request body"),
        })?;
        // Trailers are no part of a form.
        let Ok(data) = frame.into_data() else { continue };
        if first.len() + joined.len() + data.len() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        if first.is_empty() && joined.is_empty() {
            first = data;
        } else {
            if joined.is_empty() {
                joined.extend_from_slice(&std::mem::take(&mut first));
            }
            joined.extend_from_slice(&data);
        }
    }
    Ok(if joined.is_empty() { first } else { joined.freeze() })
}

/// Whether `E` is somewhere in the chain of `e`.
fn caused_by<E: std::error::Error + 'static>(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<E>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Resolves how the client authenticated (RFC 6749 section 2.3.1): HTTP Basic, or `client_id`
/// and `client_secret` in the body, or `client_id` alone for a public client. Two methods at once
/// is `invalid_request`. Takes the credentials out of `params`.
pub fn client_credentials(headers: &HeaderMap, params: &mut Params) -> Result<ClientCredentials, ApiError> {
    let basic = basic_credentials(headers)?;
    let body_id = params.take("client_id");
    let body_secret = params.take("client_secret");
    // RFC 7521 section 4.2: an assertion, with its type; alone.
    match (params.take("client_assertion_type"), params.take("client_assertion")) {
        (None, None) => {}
        (Some(kind), Some(assertion)) => {
            if basic.is_some() || body_secret.is_some() {
                return Err(ApiError::InvalidRequest("more than one client authentication method"));
            }
            return Ok(ClientCredentials::Assertion {
                client_id: body_id,
                jwt_bearer: kind == JWT_BEARER,
                assertion,
            });
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "client_assertion and client_assertion_type go together",
            ));
        }
    }
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(ApiError::InvalidRequest("more than one client authentication method")),
        (Some((id, _)), Some(body_id), None) if body_id != id => Err(ApiError::InvalidRequest(
            "client_id in the body differs from the Authorization header",
        )),
        (Some((client_id, secret)), _, None) => Ok(ClientCredentials::Basic { client_id, secret }),
        (None, Some(client_id), Some(secret)) => Ok(ClientCredentials::Post { client_id, secret }),
        (None, Some(client_id), None) => Ok(ClientCredentials::Public { client_id }),
        (None, None, Some(_)) => Err(ApiError::InvalidRequest("client_secret without client_id")),
        (None, None, None) => Ok(ClientCredentials::None),
    }
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`. `None` when the header is
/// absent or uses another scheme; a malformed Basic header is `invalid_client` (with Basic).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(ApiError::InvalidRequest("more than one Authorization header"));
    }
    let bad = ApiError::InvalidClient { basic: true };
    let value = value.to_str().map_err(|_| ApiError::InvalidClient { basic: true })?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return if value.eq_ignore_ascii_case("basic") {
            Err(bad)
        } else {
            Ok(None)
        };
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let raw = STANDARD
        .decode(rest.trim())
        .map_err(|_| ApiError::InvalidClient { basic: true })?;
    let Some(i) = raw.iter().position(|&b| b == b':') else {
        return Err(bad);
    };
    let id = decode(&raw[..i]).map_err(|_| ApiError::InvalidClient { basic: true })?;
    let secret = decode(&raw[i + 1..]).map_err(|_| ApiError::InvalidClient { basic: true })?;
    if id.is_empty() {
        return Err(bad);
    }
    Ok(Some((id, secret)))
}

/// The bearer token of `Authorization: Bearer <token>` (RFC 6750 section 2.1). `Ok(None)` when
/// there is no Authorization header or it names another scheme.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    Ok(access_token(headers)?.and_then(|(dpop, token)| (!dpop).then_some(token)))
}

/// The access token of `Authorization: Bearer` or `Authorization: DPoP` (RFC 9449 section 7.1),
/// and whether the scheme was DPoP; `None` for no header or another scheme.
pub fn access_token(headers: &HeaderMap) -> Result<Option<(bool, &str)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    let token68 = !token.is_empty()
        && token
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    match (token68, dpop) {
        (true, _) => Ok(Some((dpop, token))),
        (false, false) => Err(ApiError::InvalidToken),
        (false, true) => Err(ApiError::InvalidDpopToken),
    }
}

/// A constant name: a lookup by `&str` parses and checks the name on every request.
static DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP` header (RFC 9449 section 4.1): one, ASCII; two or more is a bad proof.
pub fn dpop_proof(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    // One lookup: most requests have no proof.
    let mut all = headers.get_all(&DPOP).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(one), None) => one
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::InvalidDpopProof { at_resource: false }),
        (Some(_), Some(_)) => Err(ApiError::InvalidDpopProof { at_resource: false }),
    }
}

/// A cookie's value from the `Cookie` header(s).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether the client prefers JSON: it names `application/json` in `Accept`.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|m| m.split(';').next().is_some_and(|m| m.trim() == "application/json"))
        })
}

/// Whether the client is a browser asking for HTML.
pub fn wants_html(headers: &HeaderMap) -> bool {
    !wants_json(headers)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn params_decode_strictly() {
        let p = Params::parse(b"a=1&b=x+y%21&c=&d").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y!"));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get("d"), None);
        assert!(Params::parse(b"a=%zz").is_err());
        assert!(Params::parse(b"a=%4").is_err());
        assert!(Params::parse(b"a=%ff").is_err());
        // Nothing to decode, but not UTF-8 either.
        assert!(Params::parse(b"a=\xff").is_err());
        assert!(Params::parse(b"\xff=1").is_err());
    }

    /// The one-pass split agrees with the plain reading of the format (split at every `&`, then
    /// at the first `=`, then [`decode`] each piece on its own) on every input of up to five
    /// bytes from an alphabet of the bytes that matter: the values, the duplicates and the errors.
    /// (`decode` itself is checked by `params_decode_strictly`.)
    #[test]
    fn one_pass_parsing_agrees_with_splitting_piece_by_piece() {
        fn reference(input: &[u8]) -> Option<Vec<(String, String)>> {
            let mut pairs = Vec::new();
            for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                let (name, value) = (decode(name).ok()?, decode(value).ok()?);
                if !value.is_empty() {
                    pairs.push((name, value));
                }
            }
            Some(pairs)
        }
        let alphabet = b"a=&%4+1\xc3\xa9";
        let mut inputs = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = inputs
                .iter()
                .filter(|i| i.len() == inputs.last().map_or(0, Vec::len))
                .flat_map(|i| alphabet.iter().map(move |&b| [i.as_slice(), &[b]].concat()))
                .collect();
            inputs.extend(longer);
        }
        assert_eq!(inputs.len(), (0..=5).map(|n| 9usize.pow(n)).sum::<usize>());
        for input in &inputs {
            let parsed = Params::parse(input);
            let Some(pairs) = reference(input) else {
                assert!(parsed.is_err(), "{input:?}");
                continue;
            };
            let mut p = parsed.unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                let all: Vec<&str> = pairs
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                assert_eq!(p.duplicated(&[name]).count(), usize::from(all.len() > 1), "{input:?}");
                assert_eq!(p.take_all(name), all, "{input:?}");
            }
            assert!(p.values.is_empty(), "{input:?}");
        }
    }

    fn frames(chunks: &[&'static str]) -> Body {
        let frames = chunks
            .iter()
            .map(|c| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(c.as_bytes()))));
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames.collect::<Vec<_>>(),
        )))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_in_one_frame_or_many() {
        assert_eq!(read_body(frames(&[]), 8).await.unwrap(), "");
        assert_eq!(read_body(frames(&["a=1&b=2"]), 8).await.unwrap(), "a=1&b=2");
        assert_eq!(read_body(frames(&["a=", "", "1&b", "=2"]), 8).await.unwrap(), "a=1&b=2");
        assert_eq!(read_body(frames(&["", "a=1"]), 8).await.unwrap(), "a=1");
        // The limit counts every frame, the first included.
        assert_eq!(read_body(frames(&["12345678"]), 8).await.unwrap(), "12345678");
        assert!(matches!(
            read_body(frames(&["123456789"]), 8).await,
            Err(ApiError::PayloadTooLarge)
        ));
        assert!(matches!(
            read_body(frames(&["1234", "56789"]), 8).await,
            Err(ApiError::PayloadTooLarge)
        ));
    }

    #[test]
    fn repeatable_parameters_keep_every_value() {
        let mut p = Params::parse(b"resource=https%3A%2F%2Fa&x=1&resource=https%3A%2F%2Fb&resource=").unwrap();
        assert_eq!(p.take_all("resource"), ["https://a", "https://b"]);
        assert_eq!(p.take_all("x"), ["1"]);
        assert!(p.take_all("y").is_empty());
    }

    /// A name the endpoints read is kept as a static string when it comes plain, copied when it
    /// comes encoded: found the same either way, and the same name for repeats.
    #[test]
    fn names_are_found_whether_kept_static_or_copied() {
        let mut p = Params::parse(b"client%5Fid=a&x%79z=b&scope=c&sc%6Fpe=d&token+type=e").unwrap();
        assert_eq!(p.get("client_id"), Some("a"));
        assert_eq!(p.get("xyz"), Some("b"));
        assert_eq!(p.get("token type"), Some("e"));
        assert_eq!(p.duplicated(&["scope", "client_id"]).collect::<Vec<_>>(), ["scope"]);
        assert_eq!(p.take_all("scope"), ["c", "d"]);
        assert!(matches!(&p.values.keys().find(|k| *k == "xyz"), Some(Cow::Owned(_))));
        let p = Params::parse(b"client_id=a&nonsense=b").unwrap();
        assert!(matches!(
            &p.values.keys().find(|k| *k == "client_id"),
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(
            &p.values.keys().find(|k| *k == "nonsense"),
            Some(Cow::Owned(_))
        ));
    }

    #[test]
    fn repeated_parameters_are_recorded_but_empty_ones_do_not_count() {
        let p = Params::parse(b"a=1&a=2&b=&b=3").unwrap();
        assert_eq!(p.duplicated(&["a", "b"]).collect::<Vec<_>>(), ["a"]);
        assert!(p.reject_duplicates(&["b"]).is_ok(), "only known parameters count");
        assert!(p.reject_duplicates(&["a"]).is_err());
        assert_eq!(p.get("b"), Some("3"));
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let h = headers(&format!("Basic {}", STANDARD.encode("my%3Aapp:s%20cret")));
        let mut p = Params::default();
        match client_credentials(&h, &mut p).unwrap() {
            ClientCredentials::Basic { client_id, secret } => {
                assert_eq!(client_id, "my:app");
                assert_eq!(secret, "s cret");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            client_credentials(&headers("Basic !!!"), &mut p),
            Err(ApiError::InvalidClient { basic: true })
        ));
        let no_colon = format!("Basic {}", STANDARD.encode("nocolon"));
        assert!(client_credentials(&headers(&no_colon), &mut p).is_err());
    }

    #[test]
    fn two_client_auth_methods_are_invalid_request() {
        let h = headers(&format!("Basic {}", STANDARD.encode("a:b")));
        let mut p = Params::parse(b"client_id=a&client_secret=b").unwrap();
        assert!(matches!(
            client_credentials(&h, &mut p),
            Err(ApiError::InvalidRequest(_))
        ));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(&headers("Bearer abc-_.~+/=")).unwrap(), Some("abc-_.~+/="));
        assert_eq!(bearer_token(&headers("bearer abc")).unwrap(), Some("abc"));
        assert!(bearer_token(&headers("Bearer")).is_err());
        assert!(bearer_token(&headers("Bearer a b")).is_err());
        assert_eq!(bearer_token(&headers("Basic abc")).unwrap(), None);
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; authplane_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, "authplane_session"), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
