//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592).
//!
//! A registered client is third-party (the user consents) and never gets scope `admin`. Its
//! secret (256 bits) and its registration access token are drawn by the server, shown once, and
//! stored as an argon2id hash (the secret, like the config file's) and a SHA-256 (the token). The
//! metadata is validated here, then kept as the config file's client format, so one parser reads
//! clients from either source.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{ClientConfig, JwkSet};
use crate::crypto;
use crate::domain::{AccessTokenFormat, Client, GrantType, Scope, Timestamp, TokenEndpointAuthMethod};
use crate::error::ApiError;
use crate::jose::Alg;
use crate::service::admin::Audit;
use crate::service::clients::parse_record;
use crate::service::hasher::Hasher;
use crate::service::revocation::Cascade;
use crate::service::{ClientRegistry, TokenService, UserDirectory};
use crate::store::{ClientRecord, Store};

/// Scopes any registered client may ask for, besides those the config's clients use.
const STANDARD_SCOPES: &str = "openid profile email offline_access";
/// What a registration that names no scope gets.
const DEFAULT_SCOPE: &str = "openid profile email";
/// Bounds on a registration's lists and strings (a registration is stored and read on the hot
/// path; nothing in it may be large).
const MAX_URIS: usize = 20;
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 256;
const MAX_KEYS: usize = 10;

/// Client metadata as RFC 7591 section 2 writes it, in requests and answers. Metadata this
/// server does not know is ignored (RFC 7591 section 2), except what it cannot honour and must
/// not silently drop: `jwks_uri` (keys are taken inline, as `jwks`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ClientMetadata {
    /// Only in an RFC 7592 update, where it must name the client being updated.
    #[serde(default, skip_serializing)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
    /// `private_key_jwt`: the client's public keys, inline (a JWK Set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing)]
    pub jwks_uri: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_bound_access_tokens: Option<bool>,
    /// `opaque` or `jwt` (RFC 9068); not an RFC 7591 name, as in Keycloak's client settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_format: Option<AccessTokenFormat>,
}

impl ClientMetadata {
    /// A client's metadata as the API shows it (every value filled in).
    pub fn of(c: &Client) -> Self {
        let auth = c.auth_method.as_str();
        let code = c.allows(GrantType::AuthorizationCode);
        Self {
            redirect_uris: c.redirect_uris.iter().map(|u| u.exact.clone()).collect(),
            grant_types: Some(c.grant_types.iter().map(|g| g.as_str().to_owned()).collect()),
            response_types: Some(if code { vec!["code".to_owned()] } else { Vec::new() }),
            token_endpoint_auth_method: Some(auth.to_owned()),
            scope: Some(c.scope.to_string()),
            client_name: c.client_name.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.iter().map(|u| u.exact.clone()).collect(),
            id_token_signed_response_alg: Some(c.id_token_alg.as_str().to_owned()),
            client_id: None,
            jwks: (!c.jwks.is_empty()).then(|| {
                let keys: Vec<serde_json::Value> = c
                    .jwks
                    .iter()
                    .filter_map(|k| {
                        let mut jwk = serde_json::to_value(k.key.jwk(k.kid.as_deref().unwrap_or(""))).ok()?;
                        if k.kid.is_none() {
                            jwk.as_object_mut()?.remove("kid");
                        }
                        Some(jwk)
                    })
                    .collect();
                serde_json::json!({ "keys": keys })
            }),
            jwks_uri: None,
            dpop_bound_access_tokens: Some(c.dpop_bound_access_tokens),
            access_token_format: Some(c.access_token_format),
        }
    }
}

/// The answer to a registration (RFC 7591 section 3.2.1) or a read (RFC 7592 section 3). No
/// `Debug`: it carries the secret and the registration access token.
#[derive(Serialize)]
pub struct Registered {
    pub client_id: String,
    /// Shown once, at registration; never stored in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    /// Present with a secret: it does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    /// Shown once, at registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    pub registration_client_uri: String,
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

#[derive(Clone)]
pub struct RegistrationService {
    inner: Arc<Inner>,
}

struct Inner {
    clients: ClientRegistry,
    users: Arc<UserDirectory>,
    tokens: TokenService,
    store: Arc<dyn Store>,
    hasher: Hasher,
    issuer: String,
    open: bool,
    audit: Audit,
    /// What registered clients may ask for: the standard OpenID Connect scopes and those of
    /// the config's clients, `admin` never.
    allowed: Scope,
}

/// What the registration service is built from.
pub struct RegistrationParts {
    pub clients: ClientRegistry,
    pub users: Arc<UserDirectory>,
    pub tokens: TokenService,
    pub store: Arc<dyn Store>,
    pub hasher: Hasher,
    pub issuer: String,
    /// `--open-registration`.
    pub open: bool,
    pub audit: Audit,
}

impl RegistrationService {
    pub fn new(parts: RegistrationParts) -> Self {
        let configured = parts
            .clients
            .configured()
            .fold(Scope::default(), |acc, c| acc.union(&c.scope));
        let allowed: Scope = configured
            .union(&Scope::parse(STANDARD_SCOPES).unwrap_or_default())
            .iter()
            .filter(|s| *s != "admin")
            .collect();
        Self {
            inner: Arc::new(Inner {
                clients: parts.clients,
                users: parts.users,
                tokens: parts.tokens,
                store: parts.store,
                hasher: parts.hasher,
                issuer: parts.issuer,
                open: parts.open,
                audit: parts.audit,
                allowed,
            }),
        }
    }

    /// `--open-registration`: registration needs no initial access token.
    pub fn is_open(&self) -> bool {
        self.inner.open
    }

    /// RFC 7591 section 3: registers a client.
    /// `by` is the initial access token's client, `None` with open registration.
    pub async fn register(
        &self,
        by: Option<&str>,
        metadata: ClientMetadata,
        now: Timestamp,
    ) -> Result<Registered, ApiError> {
        let inner = &self.inner;
        let client_id = format!("dyn-{}", &crypto::generate_token().value[..22]);
        let mut config = self.validate(&client_id, metadata)?;
        // Machine tokens (client_credentials) act for the client alone, with no user's consent
        // in between: only an operator's initial access token may register such a client, never
        // anyone under open registration.
        if by.is_none() && config.grant_types.contains(&GrantType::ClientCredentials) {
            return Err(ApiError::InvalidClientMetadata(
                "grant_types: client_credentials needs an initial access token".into(),
            ));
        }
        let secret = config
            .token_endpoint_auth_method
            .is_some_and(|m| {
                matches!(
                    m,
                    TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost
                )
            })
            .then(|| crypto::generate_token().value);
        if let Some(s) = &secret {
            config.secret_hash = Some(inner.hasher.hash(s.clone(), inner.users.password_params()).await?);
        }
        let client = config
            .parse()
            .map_err(|e| ApiError::InvalidClientMetadata(e.to_string()))?;
        let token = crypto::generate_token();
        let record = ClientRecord {
            client_id: Arc::from(client_id.as_str()),
            metadata: serde_json::to_string(&config).map_err(ApiError::internal)?,
            registration_token: Some(token.hash),
            created_at: now,
            updated_at: now,
        };
        if !inner.store.insert_client(&record).await? {
            return Err(ApiError::internal(anyhow::anyhow!("a drawn client_id was taken")));
        }
        // An unknown-client lookup of this id may have been cached on this node.
        inner.clients.cache().invalidate(&*record.client_id);
        let who = by.unwrap_or("(open registration)");
        inner
            .audit
            .record(who, "client_register", &format!("client_id={client_id}"));
        Ok(Registered {
            client_secret_expires_at: secret.as_ref().map(|_| 0),
            client_secret: secret,
            registration_access_token: Some(token.value),
            ..self.registered(&record, &client)
        })
    }

    /// RFC 7592 section 2.1: the client's registration, for the holder of its registration
    /// access token. A wrong token and an unknown client answer alike (401).
    pub async fn read(&self, client_id: &str, token: &str) -> Result<Registered, ApiError> {
        let record = self.authorized(client_id, token).await?;
        let client = parse_record(&record)?;
        Ok(self.registered(&record, &client))
    }

    /// RFC 7592 section 2.2: replaces the client's metadata. The secret stays; a client cannot
    /// turn from public to confidential or back.
    pub async fn update(
        &self,
        client_id: &str,
        token: &str,
        metadata: ClientMetadata,
        now: Timestamp,
    ) -> Result<Registered, ApiError> {
        let inner = &self.inner;
        let mut record = self.authorized(client_id, token).await?;
        if metadata.client_id.as_deref().is_some_and(|id| id != client_id) {
            return Err(ApiError::InvalidClientMetadata(
                "client_id: must be the client's own (RFC 7592 section 2.2)".into(),
            ));
        }
        let before = parse_record(&record)?;
        let mut config = self.validate(client_id, metadata)?;
        let public = config.token_endpoint_auth_method == Some(TokenEndpointAuthMethod::None);
        if public != before.is_public() {
            return Err(ApiError::InvalidClientMetadata(
                "token_endpoint_auth_method: a client cannot change between public (none) and confidential".into(),
            ));
        }
        // What needed an initial access token is not gained with the registration token.
        if config.grant_types.contains(&GrantType::ClientCredentials) && !before.allows(GrantType::ClientCredentials) {
            return Err(ApiError::InvalidClientMetadata(
                "grant_types: client_credentials cannot be added to a registration".into(),
            ));
        }
        // A secret is issued at registration only: an update keeps it, and cannot ask for one
        // the client never had (or keep one it no longer uses).
        let wants_secret = config.token_endpoint_auth_method.is_some_and(|m| {
            matches!(
                m,
                TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost
            )
        });
        if wants_secret && before.secret.is_none() {
            return Err(ApiError::InvalidClientMetadata(
                "token_endpoint_auth_method: a client registered without a secret cannot switch to one".into(),
            ));
        }
        config.secret_hash = before
            .secret
            .as_ref()
            .filter(|_| wants_secret)
            .map(|h| h.as_str().to_owned());
        let client = config
            .parse()
            .map_err(|e| ApiError::InvalidClientMetadata(e.to_string()))?;
        record.metadata = serde_json::to_string(&config).map_err(ApiError::internal)?;
        record.updated_at = now;
        if !inner.store.update_client(&record).await? {
            return Err(ApiError::InvalidToken);
        }
        inner.clients.cache().invalidate(&*record.client_id);
        inner
            .audit
            .record(client_id, "client_update", &format!("client_id={client_id}"));
        Ok(self.registered(&record, &client))
    }

    /// RFC 7592 section 2.3: the client deregisters itself.
    pub async fn delete(&self, client_id: &str, token: &str, now: Timestamp) -> Result<(), ApiError> {
        self.authorized(client_id, token).await?;
        self.remove(client_id, now).await?;
        let detail = format!("client_id={client_id}");
        self.inner.audit.record(client_id, "client_unregister", &detail);
        Ok(())
    }

    /// Deletes a registered client: it stops authenticating and its tokens stop working at once
    /// (every token check looks the client up), other nodes drop it from their caches, and the
    /// cascade revokes its grants in the store.
    pub async fn remove(&self, client_id: &str, now: Timestamp) -> Result<(), ApiError> {
        let inner = &self.inner;
        if !inner.store.delete_client(client_id).await? {
            return Err(ApiError::NotFound);
        }
        let id: Arc<str> = Arc::from(client_id);
        inner.clients.cache().invalidate(&*id);
        inner.tokens.queue_cascade(Cascade::ClientGrants(id, now), now).await
    }

    /// The stored registration of `client_id` when `token` is its registration access token.
    async fn authorized(&self, client_id: &str, token: &str) -> Result<ClientRecord, ApiError> {
        let record = self.inner.store.get_client(client_id).await?;
        let presented = crypto::hash_token(token);
        match record {
            Some(r) if r.registration_token.is_some_and(|t| crypto::ct_eq(&t.0, &presented.0)) => Ok(r),
            _ => {
                tracing::info!(target: "security", client_id, "registration access token refused");
                Err(ApiError::InvalidToken)
            }
        }
    }

    fn registered(&self, record: &ClientRecord, client: &Client) -> Registered {
        Registered {
            client_id: record.client_id.to_string(),
            client_secret: None,
            client_id_issued_at: record.created_at.secs(),
            client_secret_expires_at: None,
            registration_access_token: None,
            registration_client_uri: format!("{}/auth/register/{}", self.inner.issuer, record.client_id),
            metadata: ClientMetadata::of(client),
        }
    }

    /// RFC 7591 section 2 with this server's rules; the config file's client format on success.
    fn validate(&self, client_id: &str, m: ClientMetadata) -> Result<ClientConfig, ApiError> {
        let bad = |why: &str| ApiError::InvalidClientMetadata(why.to_owned());
        if m.jwks_uri.is_some() {
            return Err(bad("jwks_uri: not supported; send the public keys inline as jwks"));
        }
        let grant_types = match &m.grant_types {
            None => vec![GrantType::AuthorizationCode],
            Some(g) if g.is_empty() => return Err(bad("grant_types: empty")),
            Some(g) => g
                .iter()
                .map(|g| {
                    GrantType::parse(g).ok_or_else(|| {
                        bad("grant_types: authorization_code, refresh_token and client_credentials are supported")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let code = grant_types.contains(&GrantType::AuthorizationCode);
        // RFC 7591 section 2.1: response_types and grant_types must agree.
        let response_types = m
            .response_types
            .clone()
            .unwrap_or_else(|| if code { vec!["code".to_owned()] } else { Vec::new() });
        match (code, response_types.as_slice()) {
            (true, [only]) if only == "code" => {}
            (false, []) => {}
            (true, _) => return Err(bad("response_types: must be [\"code\"] with authorization_code")),
            (false, _) => return Err(bad("response_types: only with authorization_code")),
        }
        if grant_types.contains(&GrantType::RefreshToken) && !code {
            return Err(bad("grant_types: refresh_token needs authorization_code"));
        }
        let auth = match m.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => TokenEndpointAuthMethod::ClientSecretBasic,
            Some("client_secret_post") => TokenEndpointAuthMethod::ClientSecretPost,
            Some("none") => TokenEndpointAuthMethod::None,
            Some("private_key_jwt") => TokenEndpointAuthMethod::PrivateKeyJwt,
            Some(_) => {
                return Err(bad(
                    "token_endpoint_auth_method: client_secret_basic, client_secret_post, private_key_jwt or none",
                ));
            }
        };
        // private_key_jwt and only it takes keys; the config file's parser checks each one.
        let jwks = match (auth, &m.jwks) {
            (TokenEndpointAuthMethod::PrivateKeyJwt, Some(set)) => Some(
                serde_json::from_value::<JwkSet>(set.clone())
                    .ok()
                    .filter(|s| !s.keys.is_empty() && s.keys.len() <= MAX_KEYS)
                    .ok_or_else(|| bad("jwks: a JWK Set of 1 to 10 public keys"))?,
            ),
            (TokenEndpointAuthMethod::PrivateKeyJwt, None) => {
                return Err(bad("jwks: private_key_jwt needs the client's public keys"));
            }
            (_, Some(_)) => return Err(bad("jwks: only with token_endpoint_auth_method private_key_jwt")),
            (_, None) => None,
        };
        if auth == TokenEndpointAuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
            return Err(bad("grant_types: a public client (none) cannot use client_credentials"));
        }
        let redirect_uris = uris("redirect_uris", &m.redirect_uris)?;
        if code && redirect_uris.is_empty() {
            return Err(ApiError::InvalidRedirectUri(
                "redirect_uris: authorization_code needs at least one".into(),
            ));
        }
        let post_logout_redirect_uris = uris("post_logout_redirect_uris", &m.post_logout_redirect_uris)?;
        let scope = match &m.scope {
            None => Scope::parse(DEFAULT_SCOPE).unwrap_or_default(),
            Some(s) => Scope::parse(s).ok_or_else(|| bad("scope: not a space-separated list of scope tokens"))?,
        };
        if scope.contains("admin") {
            return Err(bad("scope: registered clients never get admin"));
        }
        if !scope.is_subset(&self.inner.allowed) {
            return Err(ApiError::InvalidClientMetadata(format!(
                "scope: this server offers {}",
                self.inner.allowed
            )));
        }
        if let Some(name) = &m.client_name {
            if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
                return Err(bad("client_name: 1 to 256 characters, no control characters"));
            }
        }
        let id_token_alg = match m.id_token_signed_response_alg.as_deref() {
            None => None,
            Some(a) => Some(Alg::parse(a).ok_or_else(|| bad("id_token_signed_response_alg: RS256, ES256 or EdDSA"))?),
        };
        Ok(ClientConfig {
            client_id: client_id.to_owned(),
            secret_hash: None,
            redirect_uris,
            grant_types,
            scopes: scope.iter().map(str::to_owned).collect(),
            token_endpoint_auth_method: Some(auth),
            require_pkce: false,
            // A registered client gets no CORS: the policy is built from the config file's
            // clients at start-up (README, dynamic registration).
            allowed_origins: Some(Vec::new()),
            client_name: m.client_name,
            first_party: false,
            post_logout_redirect_uris,
            id_token_signed_response_alg: id_token_alg,
            access_token_format: m.access_token_format,
            // Which resource servers a client may get tokens for is the operator's decision
            // (the config file), not the registrant's.
            resources: Vec::new(),
            dpop_bound_access_tokens: m.dpop_bound_access_tokens.unwrap_or(false),
            jwks,
            require_pushed_authorization_requests: false,
        })
    }
}

/// Redirect URIs a registration may name (RFC 8252, RFC 9700 section 2.1): https anywhere; http
/// only on loopback (a native app's local listener); a private-use scheme only in reverse domain
/// form (`com.example.app:/cb`); never a fragment, and never a scheme that runs or embeds
/// content (`javascript:`, `data:`, ...).
fn uris(field: &str, given: &[String]) -> Result<Vec<String>, ApiError> {
    let bad = |why: String| ApiError::InvalidRedirectUri(format!("{field}: {why}"));
    if given.len() > MAX_URIS {
        return Err(bad(format!("at most {MAX_URIS}")));
    }
    for uri in given {
        if uri.len() > MAX_URI_LEN {
            return Err(bad(format!("at most {MAX_URI_LEN} bytes each")));
        }
        let url = url::Url::parse(uri).map_err(|_| bad(format!("{uri:?} is not an absolute URI")))?;
        if url.fragment().is_some() || uri.contains('#') {
            return Err(bad(format!("{uri:?} has a fragment")));
        }
        let ok = match url.scheme() {
            "https" => url.host().is_some(),
            "http" => matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
            "javascript" | "data" | "vbscript" | "file" | "about" | "blob" | "ftp" | "ws" | "wss" => false,
            private => private.contains('.') && !url.cannot_be_a_base(),
        };
        if !ok {
            return Err(bad(format!(
                "{uri:?}: https, http on loopback, or a reverse-domain private scheme"
            )));
        }
    }
    Ok(given.to_vec())
}

#[cfg(test)]
mod tests {
    use super::uris;

    #[test]
    fn redirect_uris_that_could_hurt_are_refused() {
        let ok = |u: &str| uris("redirect_uris", &[u.to_owned()]).is_ok();
        for good in [
            "https://app.example/cb",
            "http://127.0.0.1:9000/cb",
            "http://localhost/cb",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript://%0aalert(1)",
            "data:text/html,x",
            "https://app.example/cb#frag",
            "https://app.example/cb#",
            "http://app.example/cb",
            "/relative/cb",
            "myapp:/cb",
            "file:///etc/passwd",
            "vbscript:x",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert!(uris("redirect_uris", &vec!["https://a.example/".to_owned(); 21]).is_err());
    }
}
