//! Newtypes that parse once: after construction a value is known to be well formed, so the
//! services never re-validate syntax.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::crypto::PasswordHashString;

/// Milliseconds since the Unix epoch. Every validation takes one as `now`, so tests control time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, as RFC 7662 `exp`/`iat` want them.
    pub fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Seconds left until `until`, rounded down, never negative.
    pub fn secs_until(self, until: Timestamp) -> u64 {
        u64::try_from((until.0 - self.0).max(0) / 1000).unwrap_or(0)
    }
}

/// A SHA-256 hash of a credential (session, code, token). Stores, caches and logs only ever hold
/// this, never the credential itself (invariant 1 of docs/reference.md).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    // A short prefix is enough to correlate log lines and says nothing about the credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Identifies one authorization (a code and every token descending from it). Revoking a grant
/// revokes all of them at once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct GrantId(pub [u8; 16]);

impl GrantId {
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A space-delimited scope (RFC 6749 section 3.3), kept sorted and deduplicated in one shared
/// string: a record's scope is a single allocation and cloning it (into the store, the caches, a
/// rotated token) only bumps a reference count. Scopes hold a handful of values, so the linear
/// scans below beat any set structure.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope(Arc<str>);

impl Scope {
    /// Parses a scope string; `None` when a token holds a character outside NQCHAR.
    pub fn parse(s: &str) -> Option<Self> {
        // Tokens of NQCHAR separated by spaces: once every byte is one or the other, the
        // whitespace split (bytes, no searcher) is the split at spaces.
        let nqchar = |b: u8| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        if !s.bytes().all(|b| b == b' ' || nqchar(b)) {
            return None;
        }
        Some(Self::from_tokens(s.split_ascii_whitespace()))
    }

    fn from_tokens<'a>(tokens: impl Iterator<Item = &'a str>) -> Self {
        let mut tokens: Vec<&str> = tokens.collect();
        tokens.sort_unstable();
        tokens.dedup();
        Self(Arc::from(tokens.join(" ")))
    }

    pub fn contains(&self, s: &str) -> bool {
        // The canonical form has single spaces: a byte split, with no empty token to skip but
        // that of the empty scope (a searcher per call cost more than these few bytes do).
        !s.is_empty() && self.0.as_bytes().split(|&b| b == b' ').any(|t| t == s.as_bytes())
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        // Both sorted and deduplicated: one walk through each. A token of `self` is looked for
        // from where the previous one was found; passing it means it is not there.
        let mut theirs = other.iter();
        self.iter().all(|t| theirs.by_ref().any(|o| o == t))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        // The canonical form holds no whitespace but its single spaces.
        self.0.split_ascii_whitespace()
    }

    pub fn union(&self, other: &Scope) -> Scope {
        Self::from_tokens(self.iter().chain(other.iter()))
    }

    /// The canonical form: sorted, deduplicated, single spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self(Arc::from(""))
    }
}

impl<S: AsRef<str>> FromIterator<S> for Scope {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Self {
        let owned: Vec<S> = it.into_iter().collect();
        Self::from_tokens(
            owned
                .iter()
                .flat_map(|s| s.as_ref().split(' '))
                .filter(|t| !t.is_empty()),
        )
    }
}

/// As its canonical string (RFC 6749 section 5.1's `scope`).
impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resource indicators (RFC 8707): the absolute URIs a token is meant for, kept like a scope
/// (sorted, deduplicated, one shared string; URIs hold no spaces). Empty means none were asked
/// for: the token's audience is then the issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources(Scope);

impl Resources {
    /// `resource` values as a request sends them: each an absolute URI without a fragment
    /// (RFC 8707 section 2); `None` when one is not.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Option<Self> {
        let ok = |v: &str| {
            v.len() <= MAX_RESOURCE_LEN
                && v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
                && url::Url::parse(v).is_ok_and(|u| u.fragment().is_none())
        };
        if !values.iter().all(|v| ok(v.as_ref())) {
            return None;
        }
        Some(Self(values.iter().map(AsRef::as_ref).collect()))
    }

    /// Resources as stored (a space-separated list this server wrote).
    pub fn from_stored(s: &str) -> Option<Self> {
        Scope::parse(s).map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &Resources) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn contains(&self, uri: &str) -> bool {
        self.0.contains(uri)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        self.0.iter()
    }

    /// The stored form: space-separated, sorted.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Bound on one `resource` value: it is stored with the grant and put in every token.
const MAX_RESOURCE_LEN: usize = 2000;

/// The form of a client's access tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenFormat {
    /// A random value, checked at introspection and UserInfo (the default).
    #[default]
    Opaque,
    /// An RFC 9068 JWT that resource servers verify against the JWKS on their own.
    Jwt,
}

/// The grant types authplane implements (RFC 6749 sections 4.1, 4.4 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// A PKCE S256 code challenge (RFC 7636 section 4.2): exactly 43 base64url characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 43 && s.bytes().all(is_base64url)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A PKCE code verifier (RFC 7636 section 4.1): 43 to 128 unreserved characters.
#[derive(Clone, Debug)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (43..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

// === Clients and users ===

/// How a client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with a key of the client's `jwks` (RFC 7523 section 2.2).
    PrivateKeyJwt,
    None,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
}

/// A public key of a `private_key_jwt` client, from its `jwks`.
#[derive(Clone, Debug)]
pub struct ClientKey {
    pub kid: Option<String>,
    pub key: crate::jose::PublicKey,
}

/// A client, parsed and validated once (from the config file): the registry serves it as it is.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: Arc<str>,
    pub secret: Option<Arc<PasswordHashString>>,
    pub redirect_uris: Vec<RegisteredUri>,
    pub grant_types: Vec<GrantType>,
    pub scope: Scope,
    pub auth_method: TokenEndpointAuthMethod,
    pub require_pkce: bool,
    /// The web origins whose pages may call the token plane with `fetch` (CORS, docs/reference.md
    /// section 3): the config's `allowed_origins`, by default the origins of the http(s)
    /// redirect URIs, where a browser app is served from.
    pub allowed_origins: Vec<Origin>,
    /// The name the consent page shows (the client_id when there is none).
    pub client_name: Option<String>,
    /// Needs no consent (config-file clients unless they say otherwise).
    pub first_party: bool,
    /// RP-initiated logout's registered `post_logout_redirect_uri`s.
    pub post_logout_redirect_uris: Vec<RegisteredUri>,
    /// `id_token_signed_response_alg`.
    pub id_token_alg: crate::jose::Alg,
    /// Opaque or JWT access tokens.
    pub access_token_format: AccessTokenFormat,
    /// The resource servers (RFC 8707) it may ask tokens for.
    pub resources: Resources,
    /// Every token request must carry a DPoP proof (RFC 9449 section 5.2).
    pub dpop_bound_access_tokens: bool,
    /// The keys its `private_key_jwt` assertions are signed with.
    pub jwks: Arc<[ClientKey]>,
    /// Its authorize requests must come through `/auth/par` (RFC 9126 section 5).
    pub require_pushed_authorization_requests: bool,
}

impl Client {
    /// Authenticates with nothing (`token_endpoint_auth_method = "none"`).
    pub fn is_public(&self) -> bool {
        self.auth_method == TokenEndpointAuthMethod::None
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    pub fn pkce_required(&self) -> bool {
        self.is_public() || self.require_pkce
    }
}

/// A registered redirect URI, as registered (what a request must repeat exactly, RFC 6749
/// section 3.1.2.3) and as the URL parser writes it (what the authorization answer's query is
/// appended to, without parsing the URI again for every answer).
#[derive(Clone, Debug)]
pub struct RegisteredUri {
    pub exact: String,
    pub base: String,
}

impl RegisteredUri {
    /// Absolute, with a base (not `mailto:`-like), without a fragment (RFC 6749 section 3.1.2).
    pub fn parse(uri: &str) -> Option<Self> {
        let url = url::Url::parse(uri).ok()?;
        if url.fragment().is_some() || url.cannot_be_a_base() {
            return None;
        }
        Some(Self {
            exact: uri.to_owned(),
            base: url.into(),
        })
    }
}

/// A web origin, `scheme://host[:port]`, serialized as browsers send it in `Origin` (lowercase
/// host, no default port), so that an allowed origin is found by comparing strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// An http(s) origin as an operator writes it: scheme, host and port only. A path (even `/`),
    /// a query, a fragment or user info is refused rather than cut off, so that a mistake such as
    /// a redirect URI pasted as an origin is caught at start-up, not by a browser refusing later.
    pub fn parse(s: &str) -> Option<Self> {
        let (_, authority) = s.split_once("://")?;
        if authority.is_empty() || authority.contains(['/', '\\', '?', '#', '@']) {
            return None;
        }
        Self::of_url(&url::Url::parse(s).ok()?)
    }

    /// The origin a page at this redirect URI runs in; `None` for schemes a browser page cannot
    /// have (a native app's `com.example:/cb`).
    pub fn of_redirect(uri: &RegisteredUri) -> Option<Self> {
        Self::of_url(&url::Url::parse(&uri.base).ok()?)
    }

    fn of_url(url: &url::Url) -> Option<Self> {
        let web = matches!(url.scheme(), "http" | "https") && url.host().is_some();
        web.then(|| Self(url.origin().ascii_serialization()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user, parsed and validated once (from the config file).
#[derive(Clone, Debug)]
pub struct User {
    pub username: String,
    pub sub: Arc<str>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub password: Arc<PasswordHashString>,
    /// Set through the admin API: the user cannot log in, and their sessions and tokens stop
    /// working.
    pub disabled: bool,
    /// Sessions and tokens from before this instant are void (runtime-managed users: their
    /// creation, their last password change or disabling); `None` for config-file users.
    pub not_before: Option<Timestamp>,
}

impl User {
    /// Whether a session opened, or a token issued, at `issued` still speaks for this user.
    pub fn accepts(&self, issued: Timestamp) -> bool {
        !self.disabled && self.not_before.is_none_or(|nb| issued > nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parses_sorts_and_dedups() {
        let s = Scope::parse("profile openid  profile").unwrap();
        assert_eq!(s.to_string(), "openid profile");
        assert!(Scope::parse("open\"id").is_none());
        assert!(Scope::parse("a\\b").is_none());
        // Only spaces separate: other whitespace is no NQCHAR (RFC 6749 appendix A.4).
        assert!(Scope::parse("openid\tprofile").is_none());
        assert!(Scope::parse("openid\nprofile").is_none());
        assert_eq!(Scope::parse("  ").unwrap(), Scope::default());
        assert!(Scope::parse("").unwrap().is_empty());
    }

    #[test]
    fn scope_set_operations() {
        let s = Scope::parse("openid profile").unwrap();
        let all = Scope::parse("email openid profile").unwrap();
        assert!(s.contains("openid") && !s.contains("open") && !s.contains("email"));
        assert!(s.is_subset(&all) && !all.is_subset(&s));
        assert!(Scope::default().is_subset(&s));
        assert_eq!(s.union(&Scope::parse("email").unwrap()), all);
        assert_eq!(["profile", "openid", "profile"].into_iter().collect::<Scope>(), s);
        assert_eq!(["", "openid profile"].into_iter().collect::<Scope>(), s);
        assert_eq!(s.iter().collect::<Vec<_>>(), ["openid", "profile"]);
        assert!(!Scope::default().contains("") && !s.contains(""));
    }

    /// `is_subset` (a merge walk over the two sorted lists) and `contains` agree with their
    /// definitions on every pair of subsets of a small universe, prefixes of one another included.
    #[test]
    fn scope_subset_and_contains_match_their_definitions() {
        let universe = ["a", "ab", "b", "email", "openid", "openid2", "profile", "z"];
        let subset = |bits: u32| -> Vec<&str> {
            (0..universe.len())
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| universe[i])
                .collect()
        };
        let sets: Vec<(Vec<&str>, Scope)> = (0..1u32 << universe.len())
            .map(|bits| {
                let names = subset(bits);
                let scope = names.iter().collect();
                (names, scope)
            })
            .collect();
        for (xs, sx) in &sets {
            for name in universe {
                assert_eq!(sx.contains(name), xs.contains(&name), "{xs:?} contains {name}");
            }
            for (ys, sy) in &sets {
                let expected = xs.iter().all(|t| ys.contains(t));
                assert_eq!(sx.is_subset(sy), expected, "{xs:?} within {ys:?}");
            }
        }
    }

    #[test]
    fn pkce_values_are_checked_for_syntax() {
        assert!(CodeChallenge::parse(&"a".repeat(43)).is_some());
        assert!(CodeChallenge::parse(&"a".repeat(42)).is_none());
        assert!(CodeChallenge::parse(&format!("{}=", "a".repeat(42))).is_none());
        assert!(CodeVerifier::parse(&"a".repeat(42)).is_none());
        assert!(CodeVerifier::parse(&"a~.-_".repeat(10)).is_some());
        assert!(CodeVerifier::parse(&"a".repeat(129)).is_none());
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let o = |s: &str| Origin::parse(s).map(|o| o.0);
        assert_eq!(o("http://127.0.0.1:9000").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(o("https://App.Example.com").as_deref(), Some("https://app.example.com"));
        assert_eq!(
            o("https://app.example.com:443").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(o("http://[::1]:8080").as_deref(), Some("http://[::1]:8080"));
        for bad in [
            "http://127.0.0.1:9000/",
            "http://127.0.0.1:9000/spa",
            "http://a.test?x",
            "http://a.test#x",
            "http://user@a.test",
            "ftp://a.test",
            "*",
            "null",
            "a.test",
            "http://",
        ] {
            assert_eq!(o(bad), None, "{bad}");
        }
        let from = |uri: &str| Origin::of_redirect(&RegisteredUri::parse(uri).unwrap()).map(|o| o.0);
        assert_eq!(
            from("http://127.0.0.1:9000/spa?x=1").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(from("com.example.app:/cb"), None);
    }

    #[test]
    fn timestamp_arithmetic() {
        let t = Timestamp(1_000);
        assert_eq!(t.plus(Duration::from_secs(2)), Timestamp(3_000));
        assert_eq!(t.secs_until(Timestamp(3_999)), 2);
        assert_eq!(Timestamp(5_000).secs_until(t), 0);
    }
}

/// Hashing for keys that are already uniformly random (SHA-256 outputs, CSPRNG ids): folds the
/// key's bytes into a u64 instead of running SipHash over them. Safe against hash flooding only
/// because no one can choose such keys: a client controls a credential, not its SHA-256. Do not
/// use it for keys a client picks (client ids, usernames, addresses).
#[derive(Clone, Copy, Debug, Default)]
pub struct UniformKeys;

impl std::hash::BuildHasher for UniformKeys {
    type Hasher = UniformKeyHasher;

    fn build_hasher(&self) -> UniformKeyHasher {
        UniformKeyHasher(0)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct UniformKeyHasher(u64);

impl std::hash::Hasher for UniformKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // Slice lengths are the same for every key of a type; they add nothing.
    }
}

#[cfg(test)]
mod uniform_keys_tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn uniform_keys_hash_by_their_bytes() {
        let a = crate::crypto::generate_token().hash;
        let b = crate::crypto::generate_token().hash;
        assert_eq!(UniformKeys.hash_one(a), UniformKeys.hash_one(a));
        assert_ne!(UniformKeys.hash_one(a), UniformKeys.hash_one(b));
        // Every byte counts, not only the first eight.
        let mut c = a;
        c.0[31] ^= 1;
        assert_ne!(UniformKeys.hash_one(a), UniformKeys.hash_one(c));
    }
}
