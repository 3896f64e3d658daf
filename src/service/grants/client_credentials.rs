//! `grant_type=client_credentials` (RFC 6749 section 4.4): a token for the client itself; no user,
//! no refresh token.

use crate::domain::{AccessTokenFormat, Resources, Timestamp};
use crate::error::ApiError;
use crate::service::tokens::{AccessTokenFor, TokenRequest, TokenResponse};
use crate::service::{Client, TokenService};
use crate::store::StoreKind;

impl TokenService {
    pub(crate) async fn client_credentials(
        &self,
        client: &Client,
        req: TokenRequest,
        jkt: Option<&str>,
        now: Timestamp,
    ) -> Result<TokenResponse, ApiError> {
        if client.is_public() {
            return Err(ApiError::UnauthorizedClient);
        }
        let scope = Self::requested_scope(req.scope.as_deref(), &client.scope)?;
        let access_for = AccessTokenFor {
            sub: None,
            scope,
            resources: Self::token_resources(&req.resources, &Resources::default(), client)?,
            grant: None,
            auth_time: None,
            jkt,
        };
        let (access, record) = self.new_access_token(client, access_for, now).await?;
        let response = self.response(access, &record, None, now);
        match client.access_token_format {
            AccessTokenFormat::Opaque => {
                self.inner.store.insert_access_token(&record).await?;
                // Write-through where a miss costs a round trip (PostgreSQL). On the memory
                // store a miss is a map read, so the token is cached at its first use, if it
                // has one (most client_credentials tokens of a busy client are used a few times
                // or never; the insert was 14% of an issuance under moka, 0.6 µs now).
                if self.inner.store.kind() == StoreKind::Postgres {
                    self.inner.caches.access_tokens.insert(record.hash, record);
                }
            }
            // A JWT is issued without a store write: its signature and claims are the record
            // (see `TokenService::unstored_access_token`); only its revocation is ever written.
            // Nor is it cached here: it is made for resource servers that check it themselves,
            // and the few that come back (introspection, revocation) are loaded once from their
            // claims. A write-through insert would cost every issuance the cache's write path
            // and crowd the cache with tokens never presented to this server.
            AccessTokenFormat::Jwt => {}
        }
        Ok(response)
    }
}
