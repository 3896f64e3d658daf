//! `grant_type=refresh_token` (RFC 6749 section 6) with rotation on every use (RFC 9700 4.14.2):
//! a rotated token presented again is a replay and revokes its grant (invariant 4 of
//! docs/reference.md).
//!
//! Rotation keeps no history (invariant 12 of docs/reference.md): the grant's one refresh record is replaced in place,
//! and a replay is recognised because the token names its family and generation
//! ([`crypto::RefreshToken`]): a token of a known family that is not the current one is a replay.

use crate::crypto::{self, RefreshToken};
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::service::id_token::Authentication;
use crate::service::tokens::{AccessTokenFor, TokenRequest, TokenResponse};
use crate::service::{Client, TokenService};
use crate::store::{GrantRecord, RotateOutcome};

impl TokenService {
    pub(crate) async fn refresh_token(
        &self,
        client: &Client,
        req: TokenRequest,
        jkt: Option<&str>,
        now: Timestamp,
    ) -> Result<TokenResponse, ApiError> {
        let inner = &self.inner;
        let value = req
            .refresh_token
            .as_deref()
            .ok_or(ApiError::InvalidRequest("refresh_token is required"))?;
        let store = &inner.store;
        let reject = |why: &'static str| {
            tracing::info!(target: "security", client_id = %client.client_id, reason = why, "refresh refused");
            Err(ApiError::InvalidGrant)
        };
        let Some(token) = RefreshToken::parse(value) else {
            return reject("malformed refresh token");
        };
        // Straight from the store, not through the cache: a refresh token is presented once (it
        // is rotated on use), so a cache could only ever answer its replay, and each entry would
        // cost an insert and an invalidation on the grant's hottest path. The rotation below is
        // atomic in the store whatever a cache holds.
        let Some(current) = store.get_refresh_token(&token.family).await? else {
            return reject("unknown refresh token");
        };
        if current.client_id != client.client_id {
            return reject("refresh token was issued to another client");
        }
        let grant = GrantRecord::of_refresh(&current);
        if !crypto::ct_eq(&current.hash.0, &token.hash.0) {
            // Only a holder of one of the family's tokens knows its family secret.
            let why = if token.generation < current.generation {
                "rotated refresh token replayed; revoking its grant"
            } else {
                "refresh token of a known family but not its current one; revoking its grant"
            };
            tracing::warn!(target: "security", client_id = %client.client_id, grant = %current.grant_id.to_hex(),
                presented_generation = token.generation, current_generation = current.generation, "{why}");
            self.revoke_grant(&grant, now).await?;
            return Err(ApiError::InvalidGrant);
        }
        if current.expires_at <= now {
            return reject("refresh token expired");
        }
        if self.active_grant(&current.grant_id, now).await?.is_none() {
            return reject("grant revoked or expired");
        }
        let users = &self.inner.users;
        if users
            .behind_login(&current.sub, current.authenticated_at())
            .await?
            .is_none()
        {
            return reject("the user was disabled or deleted, or changed their password, since the token");
        }
        // A bound family (a public client's, RFC 9449 section 5) is refreshed only with a
        // proof of its key. Nothing changes when it is not.
        if current.jkt.is_some() && current.jkt.as_deref() != jkt {
            tracing::info!(target: "security", client_id = %client.client_id, "refresh of a DPoP-bound token without a proof of its key");
            return Err(ApiError::InvalidDpopProof { at_resource: false });
        }
        let scope = Self::requested_scope(req.scope.as_deref(), &current.scope)?;
        let Some(next) = token.successor() else {
            return reject("refresh token generations exhausted");
        };
        let access_for = AccessTokenFor {
            sub: Some(&current.sub),
            scope,
            resources: Self::token_resources(&req.resources, &current.resources, client)?,
            grant: Some((current.grant_id, current.expires_at)),
            auth_time: Some(current.authenticated_at()),
            jkt,
        };
        let (access, access_record) = self.new_access_token(client, access_for, now).await?;
        let mut next_record = Self::refresh_record(&next, &grant, now);
        next_record.jkt = current.jkt.clone();
        match store
            .rotate_refresh_token(&token.hash, &access_record, &next_record)
            .await?
        {
            RotateOutcome::Rotated => {}
            RotateOutcome::AlreadyRotated => {
                // Lost the race to a concurrent use of the same token: that is a replay too.
                tracing::warn!(target: "security", client_id = %client.client_id, grant = %current.grant_id.to_hex(),
                    "refresh token used concurrently; revoking its grant");
                inner.caches.refresh_tokens.invalidate(&token.family);
                self.revoke_grant(&grant, now).await?;
                return Err(ApiError::InvalidGrant);
            }
            RotateOutcome::NotFound => {
                inner.caches.refresh_tokens.invalidate(&token.family);
                return reject("refresh token vanished (swept or purged)");
            }
        }
        // The family's current token changed in the store; no cache here may still hold the old
        // one as current (an introspection may have cached it).
        inner.caches.refresh_tokens.invalidate(&token.family);
        // The refreshed ID token names the same authentication (OpenID Connect Core 12.2): same
        // `sub` and `auth_time`, no `nonce`.
        let id_token = match access_record.scope.contains("openid") {
            true => {
                let auth = Authentication {
                    sub: &current.sub,
                    auth_time: current.auth_time,
                    nonce: None,
                    sid: current.sid.as_deref(),
                };
                Some(self.id_token(client, auth, &access, now).await?)
            }
            false => None,
        };
        let mut response = self.response(access, &access_record, Some(next.value), now);
        response.id_token = id_token;
        inner.caches.access_tokens.insert(access_record.hash, access_record);
        Ok(response)
    }
}
