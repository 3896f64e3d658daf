//! `grant_type=authorization_code` (RFC 6749 section 4.1.3, RFC 7636 section 4.6).

use crate::crypto;
use crate::domain::{CodeVerifier, GrantType, Timestamp};
use crate::error::ApiError;
use crate::service::authorize::allowed_resources;
use crate::service::id_token::Authentication;
use crate::service::tokens::{AccessTokenFor, TokenRequest, TokenResponse};
use crate::service::{Client, TokenService};
use crate::store::{ConsumeOutcome, GrantRecord};

impl TokenService {
    pub(crate) async fn authorization_code(
        &self,
        client: &Client,
        req: TokenRequest,
        jkt: Option<&str>,
        now: Timestamp,
    ) -> Result<TokenResponse, ApiError> {
        let inner = &self.inner;
        let code = req
            .code
            .as_deref()
            .ok_or(ApiError::InvalidRequest("code is required"))?;
        // Syntax first, so a malformed request does not burn the code.
        let verifier = match req.code_verifier.as_deref() {
            Some(v) => Some(CodeVerifier::parse(v).ok_or(ApiError::InvalidRequest("code_verifier is malformed"))?),
            None => None,
        };
        // And a resource the client may never have (the grant's own are checked below).
        allowed_resources(&req.resources, &client.resources)?;
        let hash = crypto::hash_token(code);
        let record = match inner.store.consume_code(&hash).await? {
            ConsumeOutcome::Consumed(r) => r,
            ConsumeOutcome::AlreadyConsumed(r) => {
                // Invariant 2 of docs/reference.md: a replayed code revokes everything issued from its first use.
                tracing::warn!(target: "security", client_id = %client.client_id, grant = %r.grant_id.to_hex(),
                    "authorization code replayed; revoking its grant");
                let tombstone = GrantRecord::of_code(&r, now, inner.ttls.refresh_token);
                self.revoke_grant(&tombstone, now).await?;
                return Err(ApiError::InvalidGrant);
            }
            ConsumeOutcome::NotFound => {
                tracing::info!(target: "security", client_id = %client.client_id, "unknown authorization code");
                return Err(ApiError::InvalidGrant);
            }
        };
        let reject = |why: &'static str| {
            tracing::info!(target: "security", client_id = %client.client_id, reason = why, "code exchange refused");
            Err(ApiError::InvalidGrant)
        };
        if record.client_id != client.client_id {
            return reject("code was issued to another client");
        }
        if record.expires_at <= now {
            return reject("code expired");
        }
        match (&req.redirect_uri, record.redirect_uri_given) {
            (Some(uri), _) if *uri != record.redirect_uri => {
                return reject("redirect_uri differs from authorize");
            }
            (None, true) => return reject("redirect_uri missing but was given at authorize"),
            _ => {}
        }
        match (&record.challenge, &verifier) {
            (Some(challenge), Some(verifier)) => {
                if !crypto::verify_pkce_s256(verifier, challenge) {
                    return reject("PKCE verifier does not match the challenge");
                }
            }
            (Some(_), None) => return reject("PKCE verifier missing"),
            (None, Some(_)) => {
                return reject("PKCE verifier sent but no challenge was given (downgrade)");
            }
            (None, None) => {}
        }
        // RFC 9449 section 10: a code bound at authorize needs a proof of that key.
        if record.dpop_jkt.is_some() && record.dpop_jkt.as_deref() != jkt {
            tracing::info!(target: "security", client_id = %client.client_id, "code exchange without a DPoP proof of the key named at authorize");
            return Err(ApiError::InvalidDpopProof { at_resource: false });
        }
        if inner.users.behind_login(&record.sub, record.auth_time).await?.is_none() {
            return reject("the user was disabled or deleted, or changed their password, since the login");
        }
        let resources = match Self::token_resources(&req.resources, &record.resources, client) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(target: "security", client_id = %client.client_id, "code exchange for a resource the grant does not name");
                return Err(e);
            }
        };
        let grant = GrantRecord::of_code(&record, now, inner.ttls.refresh_token);
        let access_for = AccessTokenFor {
            sub: Some(&record.sub),
            scope: record.scope.clone(),
            resources,
            grant: Some((grant.id, grant.expires_at)),
            auth_time: Some(record.auth_time),
            jkt,
        };
        let (access, access_record) = self.new_access_token(client, access_for, now).await?;
        // A public client's refresh tokens are bound to its DPoP key (RFC 9449 section 5); a
        // confidential client's are bound to its authentication already.
        let refresh = client.allows(GrantType::RefreshToken).then(|| {
            let (value, mut record) = self.new_refresh_token(&grant, now);
            record.jkt = jkt.filter(|_| client.is_public()).map(str::to_owned);
            (value, record)
        });
        inner
            .store
            .insert_grant_tokens(&grant, &access_record, refresh.as_ref().map(|(_, r)| r))
            .await?;
        let id_token = match record.scope.contains("openid") {
            true => {
                let auth = Authentication {
                    sub: &record.sub,
                    auth_time: Some(record.auth_time),
                    nonce: record.nonce.as_deref(),
                    sid: record.sid.as_deref(),
                };
                Some(self.id_token(client, auth, &access, now).await?)
            }
            false => None,
        };
        let mut response = self.response(access, &access_record, refresh.map(|(v, _)| v), now);
        response.id_token = id_token;
        // The access token is cached as it is issued (the client uses it at once); the refresh
        // token is not: it is presented once, after the access token's lifetime, long after any
        // cache entry of it would have expired (see the refresh grant).
        inner
            .caches
            .access_tokens
            .insert(access_record.hash, access_record)
            .await;
        Ok(response)
    }
}
