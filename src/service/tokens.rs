//! The token service: the token endpoint's dispatch, token issuance, and access-token validation
//! for userinfo and introspection. Each grant lives in its own file under `grants/`.

use std::sync::Arc;

use metrics::Counter;
use serde::Serialize;

use crate::crypto::{self, NewRefreshToken};
use crate::domain::{GrantId, GrantType, Scope, Timestamp, User};
use crate::error::ApiError;
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
        let res = match grant {
            GrantType::AuthorizationCode => self.authorization_code(client, req, now).await,
            GrantType::RefreshToken => self.refresh_token(client, req, now).await,
            GrantType::ClientCredentials => self.client_credentials(client, req, now).await,
        }?;
        self.inner.issued[grant as usize].increment(1);
        Ok(res)
    }

    /// A new access token record for a grant, never outliving it.
    pub(crate) fn new_access_token(
        &self,
        client_id: &Arc<str>,
        sub: Option<&Arc<str>>,
        scope: Scope,
        grant: Option<(GrantId, Timestamp)>,
        now: Timestamp,
    ) -> (String, AccessTokenRecord) {
        let token = crypto::generate_token();
        let mut expires_at = now.plus(self.inner.ttls.access_token);
        if let Some((_, grant_expiry)) = grant {
            expires_at = expires_at.min(grant_expiry);
        }
        let record = AccessTokenRecord {
            hash: token.hash,
            client_id: Arc::clone(client_id),
            sub: sub.cloned(),
            scope,
            grant_id: grant.map(|(id, _)| id),
            issued_at: now,
            expires_at,
            revoked_at: None,
        };
        (token.value, record)
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
            token_type: "Bearer",
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
        let grant = self.inner.caches.grants.get_or_load(id, store.get_grant(id)).await?;
        Ok(grant.filter(|g| g.revoked_at.is_none() && g.expires_at > now))
    }

    /// The access token when it is currently valid: known, not expired, not revoked, its grant
    /// active, its user still behind the grant's login and its client still there. Checked on
    /// every call, cached or not.
    pub async fn valid_access_token(&self, value: &str, now: Timestamp) -> Result<Option<ValidToken>, ApiError> {
        let hash = crypto::hash_token(value);
        let store = &self.inner.store;
        let Some(record) = self
            .inner
            .caches
            .access_tokens
            .get_or_load(&hash, store.get_access_token(&hash))
            .await?
        else {
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
        if self.inner.clients.get(&record.client_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(ValidToken { record, user }))
    }

    /// The UserInfo endpoint (OIDC Core 5.3): claims by scope.
    pub async fn userinfo(&self, token: &str, now: Timestamp) -> Result<UserInfo, ApiError> {
        let ValidToken { record, user } = self
            .valid_access_token(token, now)
            .await?
            .ok_or(ApiError::InvalidToken)?;
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
