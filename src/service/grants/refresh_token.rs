//! `grant_type=refresh_token` (RFC 6749 section 6) with rotation on every use (RFC 9700 4.14.2):
//! a rotated token presented again is a replay and revokes its grant (invariant 4 of docs/reference.md).

use crate::crypto;
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::service::tokens::{TokenRequest, TokenResponse};
use crate::service::{Client, TokenService};
use crate::store::{GrantRecord, RotateOutcome};

impl TokenService {
    pub(crate) async fn refresh_token(
        &self,
        client: &Client,
        req: TokenRequest,
        now: Timestamp,
    ) -> Result<TokenResponse, ApiError> {
        let inner = &self.inner;
        let value = req
            .refresh_token
            .as_deref()
            .ok_or(ApiError::InvalidRequest("refresh_token is required"))?;
        let hash = crypto::hash_token(value);
        let store = &inner.store;
        let reject = |why: &'static str| {
            tracing::info!(target: "security", client_id = %client.client_id, reason = why, "refresh refused");
            Err(ApiError::InvalidGrant)
        };
        // Straight from the store, not through the cache: a refresh token is presented once (it
        // is rotated on use), so a cache could only ever answer its replay, and each entry would
        // cost an insert and an invalidation on the grant's hottest path. The rotation below is
        // atomic in the store whatever a cache holds.
        let Some(old) = store.get_refresh_token(&hash).await? else {
            return reject("unknown refresh token");
        };
        if old.client_id != client.client_id {
            return reject("refresh token was issued to another client");
        }
        let grant = GrantRecord::of_refresh(&old);
        if old.rotated_at.is_some() {
            tracing::warn!(target: "security", client_id = %client.client_id, grant = %old.grant_id.to_hex(),
                "rotated refresh token replayed; revoking its grant");
            self.revoke_grant(&grant, now).await?;
            return Err(ApiError::InvalidGrant);
        }
        if old.expires_at <= now {
            return reject("refresh token expired");
        }
        if !self.grant_active(&old.grant_id, now).await? {
            return reject("grant revoked or expired");
        }
        let scope = Self::requested_scope(req.scope.as_deref(), &old.scope)?;
        let (access, access_record) = self.new_access_token(
            &client.client_id,
            Some(&old.sub),
            scope,
            Some((old.grant_id, old.expires_at)),
            now,
        );
        let (refresh, refresh_record) = self.new_refresh_token(&grant, now);
        match store
            .rotate_refresh_token(&hash, now, &access_record, &refresh_record)
            .await?
        {
            RotateOutcome::Rotated => {}
            RotateOutcome::AlreadyRotated => {
                // Lost the race to a concurrent use of the same token: that is a replay too.
                tracing::warn!(target: "security", client_id = %client.client_id, grant = %old.grant_id.to_hex(),
                    "refresh token used concurrently; revoking its grant");
                inner.caches.refresh_tokens.invalidate(&hash).await;
                self.revoke_grant(&grant, now).await?;
                return Err(ApiError::InvalidGrant);
            }
            RotateOutcome::NotFound => {
                inner.caches.refresh_tokens.invalidate(&hash).await;
                return reject("refresh token vanished (swept or purged)");
            }
        }
        // The old token is rotated in the store; no cache here may still hold it as live (an
        // introspection may have cached it).
        inner.caches.refresh_tokens.invalidate(&hash).await;
        let response = self.response(access, &access_record, Some(refresh), now);
        inner
            .caches
            .access_tokens
            .insert(access_record.hash, access_record)
            .await;
        Ok(response)
    }
}
