//! The token service: the token endpoint's dispatch, token issuance, and access-token validation
//! for userinfo and introspection. Each grant lives in its own file under `grants/`.

use std::sync::Arc;

use metrics::Counter;
use serde::Serialize;

use crate::crypto::{self, NewRefreshToken};
use crate::domain::{AccessTokenFormat, GrantId, GrantType, Resources, Scope, Timestamp, TokenHash, User};
use crate::error::ApiError;
use crate::jose::Alg;
use crate::service::authorize::allowed_resources;
use crate::service::dpop::{DpopVerifier, Proof, ProofFor};
use crate::service::{Caches, Client, ClientRegistry, KeyService, RevocationQueue, Ttls, UserDirectory};
use crate::store::{AccessTokenRecord, GrantRecord, RefreshTokenRecord, Store};
use crate::telemetry::{self, Metrics};

/// Token endpoint parameters as they arrived (empty values count as absent).
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    /// `resource` (RFC 8707), which may repeat.
    pub resources: Vec<String>,
    /// The `DPoP` header (RFC 9449), not yet verified.
    pub dpop: Option<String>,
}

/// How a request at a resource (UserInfo) presented its access token.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    /// `Authorization: DPoP` rather than `Bearer`.
    pub dpop_scheme: bool,
    /// The `DPoP` proof header.
    pub proof: Option<&'a str>,
    /// The request's method, which the proof must name.
    pub method: &'a str,
}

impl Presented<'_> {
    /// A bearer token with no proof (the common case, and every test of an unbound token).
    pub const BEARER_GET: Presented<'static> = Presented {
        dpop_scheme: false,
        proof: None,
        method: "GET",
    };
}

/// RFC 6749 section 5.1.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: Scope,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// OpenID Connect Core section 5.3.2, limited by the token's scope.
#[derive(Debug, Serialize)]
pub struct UserInfo {
    pub sub: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// An access token that is valid now, and the user it speaks for (`None` for client_credentials
/// tokens, which act for their client).
pub struct ValidToken {
    pub record: Arc<AccessTokenRecord>,
    pub user: Option<Arc<User>>,
}

#[derive(Clone)]
pub struct TokenService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) caches: Arc<Caches>,
    pub(crate) users: Arc<UserDirectory>,
    pub(crate) clients: ClientRegistry,
    pub(crate) ttls: Ttls,
    pub(crate) revocations: Arc<RevocationQueue>,
    pub(crate) keys: KeyService,
    pub(crate) issuer: String,
    pub(crate) id_token_ttl: std::time::Duration,
    /// `--access-token-alg`: what JWT access tokens are signed with.
    access_token_alg: Alg,
    pub(crate) dpop: DpopVerifier,
    /// The token endpoint's and UserInfo's URLs, which DPoP proofs name (`htu`).
    token_url: url::Url,
    userinfo_url: url::Url,
    issued: [Counter; 3],
}

/// What the token service needs besides the store and caches.
pub struct TokenServiceParts {
    pub store: Arc<dyn Store>,
    pub caches: Arc<Caches>,
    pub users: Arc<UserDirectory>,
    pub clients: ClientRegistry,
    pub ttls: Ttls,
    pub revocations: Arc<RevocationQueue>,
    pub keys: KeyService,
    pub issuer: String,
    pub access_token_alg: Alg,
    pub dpop: DpopVerifier,
    /// `<issuer>/auth/token` and `<issuer>/auth/userinfo`, which DPoP proofs name.
    pub token_url: url::Url,
    pub userinfo_url: url::Url,
}

/// Whom and what an access token is for.
pub(crate) struct AccessTokenFor<'a> {
    /// The user; `None` for client_credentials tokens, which act for their client.
    pub sub: Option<&'a Arc<str>>,
    pub scope: Scope,
    /// The audience (RFC 8707); empty: the issuer.
    pub resources: Resources,
    /// The grant and its expiry; `None` for client_credentials.
    pub grant: Option<(GrantId, Timestamp)>,
    /// When the user logged in; user tokens only.
    pub auth_time: Option<Timestamp>,
    /// The thumbprint of the DPoP key the token is bound to (RFC 9449 section 6).
    pub jkt: Option<&'a str>,
}

/// `cnf` (RFC 7800) of a DPoP-bound token.
#[derive(Serialize)]
pub struct Confirmation<'a> {
    pub jkt: &'a str,
}

/// The claims of a JWT access token (RFC 9068 section 2.2).
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    exp: i64,
    iat: i64,
    aud: Audience<'a>,
    sub: &'a str,
    client_id: &'a str,
    jti: String,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
}

/// A token's `aud`: its resources, or the issuer when it names none; one value as a string,
/// several as an array (RFC 7519 section 4.1.3).
pub struct Audience<'a> {
    pub resources: &'a Resources,
    pub issuer: &'a str,
}

impl Serialize for Audience<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut all = self.resources.iter();
        match (all.next(), all.next()) {
            (None, _) => s.serialize_str(self.issuer),
            (Some(one), None) => s.serialize_str(one),
            _ => {
                let mut seq = s.serialize_seq(None)?;
                for r in self.resources.iter() {
                    seq.serialize_element(r)?;
                }
                seq.end()
            }
        }
    }
}

impl TokenService {
    pub fn new(parts: TokenServiceParts, metrics: &Metrics) -> Self {
        let TokenServiceParts {
            store,
            caches,
            users,
            clients,
            ttls,
            revocations,
            keys,
            issuer,
            access_token_alg,
            dpop,
            token_url,
            userinfo_url,
        } = parts;
        let issued = [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]
        .map(|g| metrics.counter(telemetry::TOKENS_ISSUED, &[("grant_type", g.as_str())]));
        Self {
            inner: Arc::new(Inner {
                store,
                caches,
                users,
                clients,
                ttls,
                revocations,
                keys,
                issuer,
                id_token_ttl: ttls.id_token,
                access_token_alg,
                dpop,
                token_url,
                userinfo_url,
                issued,
            }),
        }
    }

    /// The token endpoint, after client authentication.
    pub async fn exchange(
        &self,
        client: &Client,
        req: TokenRequest,
        now: Timestamp,
    ) -> Result<TokenResponse, ApiError> {
        let grant = req
            .grant_type
            .as_deref()
            .ok_or(ApiError::InvalidRequest("grant_type is required"))?;
        let grant = GrantType::parse(grant).ok_or(ApiError::UnsupportedGrantType)?;
        if !client.allows(grant) {
            return Err(ApiError::UnauthorizedClient);
        }
        // DPoP (RFC 9449 section 5): a proof binds what is issued to its key.
        let proof = match req.dpop.as_deref() {
            Some(p) => Some(self.dpop_proof(&client.client_id, p, &ProofFor::post_to(&self.inner.token_url), now)?),
            None if client.dpop_bound_access_tokens => {
                tracing::info!(target: "security", client_id = %client.client_id, "token request without the DPoP proof the client must send");
                return Err(ApiError::InvalidDpopProof { at_resource: false });
            }
            None => None,
        };
        let jkt = proof.as_ref().map(|p| p.jkt.as_str());
        let res = match grant {
            GrantType::AuthorizationCode => self.authorization_code(client, req, jkt, now).await,
            GrantType::RefreshToken => self.refresh_token(client, req, jkt, now).await,
            GrantType::ClientCredentials => self.client_credentials(client, req, jkt, now).await,
        }?;
        self.inner.issued[grant as usize].increment(1);
        Ok(res)
    }

    /// A new access token for `client`, never outliving its grant: a random value, or for a
    /// client with `access_token_format = "jwt"` an RFC 9068 JWT signed with
    /// `--access-token-alg`. Either way the record is keyed by the SHA-256 of the value.
    pub(crate) async fn new_access_token(
        &self,
        client: &Client,
        t: AccessTokenFor<'_>,
        now: Timestamp,
    ) -> Result<(String, AccessTokenRecord), ApiError> {
        let inner = &self.inner;
        let mut expires_at = now.plus(inner.ttls.access_token);
        if let Some((_, grant_expiry)) = t.grant {
            expires_at = expires_at.min(grant_expiry);
        }
        let (value, hash) = match client.access_token_format {
            AccessTokenFormat::Opaque => {
                let token = crypto::generate_token();
                (token.value, token.hash)
            }
            AccessTokenFormat::Jwt => {
                // The JWT says whole seconds; the record says the same, so that a node that
                // knows the token only from its claims reaches the same expiry: the full
                // lifetime rounded up, or the grant's end rounded down.
                let whole = |secs: i64| Timestamp::from_millis(secs.saturating_mul(1000));
                expires_at = whole(expires_at.millis().div_euclid(1000) + i64::from(expires_at.millis() % 1000 != 0));
                if let Some((_, grant_expiry)) = t.grant {
                    expires_at = expires_at.min(whole(grant_expiry.secs()));
                }
                let claims = AccessTokenClaims {
                    iss: &inner.issuer,
                    exp: expires_at.secs(),
                    iat: now.secs(),
                    aud: Audience {
                        resources: &t.resources,
                        issuer: &inner.issuer,
                    },
                    sub: t.sub.map_or(&*client.client_id, |s| &**s),
                    client_id: &client.client_id,
                    jti: crypto::random_uuid().to_string(),
                    scope: t.scope.as_str(),
                    auth_time: t.auth_time.map(Timestamp::secs),
                    cnf: t.jkt.map(|jkt| Confirmation { jkt }),
                };
                let signed = inner
                    .keys
                    .sign(inner.access_token_alg, JWT_ACCESS_TOKEN_TYP, &claims)
                    .await
                    .map_err(ApiError::internal)?;
                let hash = crypto::hash_token(&signed.token);
                (signed.token, hash)
            }
        };
        let record = AccessTokenRecord {
            hash,
            client_id: Arc::clone(&client.client_id),
            sub: t.sub.cloned(),
            scope: t.scope,
            grant_id: t.grant.map(|(id, _)| id),
            issued_at: now,
            expires_at,
            revoked_at: None,
            resources: t.resources,
            jkt: t.jkt.map(str::to_owned),
        };
        Ok((value, record))
    }

    /// The resources a token request may name (RFC 8707): those of its grant, or the client's
    /// when the grant named none. Without `resource`, the token is for the grant's resources.
    pub(crate) fn token_resources(
        requested: &[String],
        grant: &Resources,
        client: &Client,
    ) -> Result<Resources, ApiError> {
        let allowed = if grant.is_empty() { &client.resources } else { grant };
        let resources = allowed_resources(requested, allowed)?;
        Ok(if resources.is_empty() { grant.clone() } else { resources })
    }

    /// The record of a client_credentials JWT access token, which no store holds: issued
    /// without a write, it is known from its signature and claims alone (a revoked one is in
    /// the store, as a revoked record, until it expires). `None` for anything else: user
    /// tokens (with `auth_time`) are always in the store, so one that is not was purged.
    pub(crate) fn unstored_access_token(&self, value: &str, hash: TokenHash) -> Option<AccessTokenRecord> {
        use serde_json::Value;
        if value.bytes().filter(|b| *b == b'.').count() != 2 {
            return None;
        }
        let issuer = &self.inner.issuer;
        let verified = self.inner.keys.verify(value).ok()?;
        if verified.typ.as_deref() != Some(JWT_ACCESS_TOKEN_TYP) {
            return None;
        }
        let c = &verified.claims;
        let text = |k: &str| c.get(k).and_then(Value::as_str);
        let secs = |k: &str| c.get(k).and_then(Value::as_i64);
        let client_id = text("client_id")?;
        if text("iss") != Some(issuer.as_str()) || c.contains_key("auth_time") || text("sub") != Some(client_id) {
            return None;
        }
        let resources = match c.get("aud")? {
            Value::String(a) if a == issuer => Resources::default(),
            Value::String(a) => Resources::parse(&[a])?,
            Value::Array(all) => {
                let all: Vec<&str> = all.iter().map(Value::as_str).collect::<Option<_>>()?;
                Resources::parse(&all)?
            }
            _ => return None,
        };
        Some(AccessTokenRecord {
            hash,
            client_id: Arc::from(client_id),
            sub: None,
            scope: Scope::parse(text("scope")?)?,
            grant_id: None,
            issued_at: Timestamp::from_millis(secs("iat")?.saturating_mul(1000)),
            expires_at: Timestamp::from_millis(secs("exp")?.saturating_mul(1000)),
            revoked_at: None,
            resources,
            jkt: match c.get("cnf") {
                Some(cnf) => Some(cnf.get("jkt")?.as_str()?.to_owned()),
                None => None,
            },
        })
    }

    /// The first refresh token of a new grant: a new token family.
    pub(crate) fn new_refresh_token(&self, grant: &GrantRecord, now: Timestamp) -> (String, RefreshTokenRecord) {
        let token = crypto::generate_refresh_token();
        let record = Self::refresh_record(&token, grant, now);
        (token.value, record)
    }

    /// The record of the refresh token `token` of `grant`, issued at `now`.
    pub(crate) fn refresh_record(token: &NewRefreshToken, grant: &GrantRecord, now: Timestamp) -> RefreshTokenRecord {
        RefreshTokenRecord {
            family: token.family,
            hash: token.hash,
            generation: token.generation,
            client_id: grant.client_id.clone(),
            sub: grant.sub.clone(),
            scope: grant.scope.clone(),
            grant_id: grant.id,
            issued_at: now,
            expires_at: grant.expires_at,
            auth_time: grant.auth_time,
            sid: grant.sid.clone(),
            resources: grant.resources.clone(),
            // Set by the grant that issues it: only a public client's family is bound.
            jkt: None,
        }
    }

    pub(crate) fn response(
        &self,
        access: String,
        record: &AccessTokenRecord,
        refresh: Option<String>,
        now: Timestamp,
    ) -> TokenResponse {
        TokenResponse {
            access_token: access,
            token_type: if record.jkt.is_some() { "DPoP" } else { "Bearer" },
            expires_in: now.secs_until(record.expires_at),
            scope: record.scope.clone(),
            refresh_token: refresh,
            id_token: None,
        }
    }

    /// The grant when it exists and is not revoked or expired. A missing grant is not active:
    /// its tokens were issued under a grant that has since been swept or never committed.
    pub(crate) async fn active_grant(
        &self,
        id: &GrantId,
        now: Timestamp,
    ) -> Result<Option<Arc<GrantRecord>>, ApiError> {
        let store = &self.inner.store;
        let grant = self.inner.caches.grants.get_or_load(id, || store.get_grant(id)).await?;
        Ok(grant.filter(|g| g.revoked_at.is_none() && g.expires_at > now))
    }

    /// The access token when it is currently valid: known, not expired, not revoked, its grant
    /// active, its user still behind the grant's login and its client still there. Checked on
    /// every call, cached or not. `caller` is the client that authenticated this request, if
    /// any: when the token is its own, the client was just found, and is not looked up again.
    pub async fn valid_access_token(
        &self,
        value: &str,
        caller: Option<&Client>,
        now: Timestamp,
    ) -> Result<Option<ValidToken>, ApiError> {
        let hash = crypto::hash_token(value);
        let store = &self.inner.store;
        let load = async {
            Ok::<_, crate::store::StoreError>(match store.get_access_token(&hash).await? {
                Some(stored) => Some(stored),
                None => self.unstored_access_token(value, hash),
            })
        };
        let Some(record) = self.inner.caches.access_tokens.get_or_load(&hash, || load).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() || record.expires_at <= now {
            return Ok(None);
        }
        let mut login = record.issued_at;
        if let Some(grant) = &record.grant_id {
            match self.active_grant(grant, now).await? {
                Some(g) => login = g.authenticated_at(),
                None => return Ok(None),
            }
        }
        // A user or client removed (or a user disabled, or whose password changed since) takes
        // its tokens with it at once, before the cascade revokes their grants.
        let user = match &record.sub {
            Some(sub) => match self.inner.users.behind_login(sub, login).await? {
                Some(u) => Some(u),
                None => return Ok(None),
            },
            None => None,
        };
        let own = caller.is_some_and(|c| c.client_id == record.client_id);
        if !own && self.inner.clients.get(&record.client_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(ValidToken { record, user }))
    }

    /// Verifies `client_id`'s DPoP proof for `req` ([`DpopVerifier::check`]).
    pub(crate) fn dpop_proof(
        &self,
        client_id: &str,
        proof: &str,
        req: &ProofFor<'_>,
        now: Timestamp,
    ) -> Result<Proof, ApiError> {
        self.inner.dpop.check(client_id, proof, req, now)
    }

    /// RFC 9449 section 7: a bound token needs the `DPoP` scheme and a proof of its key (with
    /// `ath`); an unbound one the `Bearer` scheme.
    fn check_presentation(
        &self,
        record: &AccessTokenRecord,
        token: &str,
        p: Presented<'_>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        match (&record.jkt, p.dpop_scheme) {
            (None, false) => Ok(()),
            (Some(_), false) => {
                tracing::info!(target: "security", client_id = %record.client_id, "DPoP-bound token sent as a bearer token");
                Err(ApiError::InvalidToken)
            }
            (None, true) => Err(ApiError::InvalidDpopToken),
            (Some(jkt), true) => {
                let proof = p.proof.ok_or(ApiError::InvalidDpopToken)?;
                let url = &self.inner.userinfo_url;
                let req = ProofFor {
                    method: p.method,
                    url,
                    access_token: Some(token),
                };
                let got = self.dpop_proof(&record.client_id, proof, &req, now)?;
                if got.jkt != *jkt {
                    tracing::info!(target: "security", client_id = %record.client_id, "DPoP proof of another key than the token's");
                    return Err(ApiError::InvalidDpopToken);
                }
                Ok(())
            }
        }
    }

    /// The UserInfo endpoint (OIDC Core 5.3): claims by scope.
    pub async fn userinfo(&self, token: &str, presented: Presented<'_>, now: Timestamp) -> Result<UserInfo, ApiError> {
        let invalid = match presented.dpop_scheme {
            true => ApiError::InvalidDpopToken,
            false => ApiError::InvalidToken,
        };
        let ValidToken { record, user } = self.valid_access_token(token, None, now).await?.ok_or(invalid)?;
        self.check_presentation(&record, token, presented, now)?;
        // UserInfo is a resource of the issuer's: a token meant for other resources only
        // (RFC 8707, RFC 9068 section 4) is not accepted here.
        if !record.resources.is_empty() && !record.resources.contains(&self.inner.issuer) {
            tracing::info!(target: "security", client_id = %record.client_id, "UserInfo with a token for other resource servers");
            return Err(ApiError::InvalidToken);
        }
        let Some(user) = user else {
            return Err(ApiError::InsufficientScope);
        };
        if !record.scope.contains("openid") {
            return Err(ApiError::InsufficientScope);
        }
        let profile = record.scope.contains("profile");
        let email = record.scope.contains("email");
        Ok(UserInfo {
            sub: user.sub.clone(),
            name: if profile { user.name.clone() } else { None },
            email: if email { user.email.clone() } else { None },
            email_verified: (email && user.email.is_some()).then_some(user.email_verified),
        })
    }

    /// The issuer, the `aud` of tokens that name no resource.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The scope a token request asks for: all of `allowed` when absent, else a subset of it.
    pub(crate) fn requested_scope(requested: Option<&str>, allowed: &Scope) -> Result<Scope, ApiError> {
        let scope = match requested {
            None => allowed.clone(),
            Some(s) => Scope::parse(s).ok_or(ApiError::InvalidScope)?,
        };
        if scope.is_empty() || !scope.is_subset(allowed) {
            return Err(ApiError::InvalidScope);
        }
        Ok(scope)
    }
}

/// The `typ` of JWT access tokens (RFC 9068 section 2.1).
pub const JWT_ACCESS_TOKEN_TYP: &str = "at+jwt";
