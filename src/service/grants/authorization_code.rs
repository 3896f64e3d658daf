//! `grant_type=authorization_code` (RFC 6749 section 4.1.3, RFC 7636 section 4.6).

use std::sync::OnceLock;

use crate::crypto;
use crate::domain::{CodeVerifier, GrantType, Resources, Timestamp};
use crate::error::ApiError;
use crate::service::authorize::allowed_resources;
use crate::service::id_token::Authentication;
use crate::service::tokens::{AccessTokenFor, TokenRequest, TokenResponse};
use crate::service::{Client, TokenService};
use crate::store::{CodeRecord, ConsumeOutcome, GrantRecord};

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
        // Every check of the request against the code runs before the code is consumed: a
        // request refused here changes nothing, so neither a client's correctable mistake nor an
        // attacker holding a stolen code (with a proof of another key, as another client, or
        // without the verifier) can burn it for its rightful client. The code stays single use
        // all the same: it is consumed atomically once the checks pass, and a code consumed before
        // is a replay whatever the request says (invariant 2).
        // The check works out the token's resources; kept so that they are not worked out again.
        let checked = OnceLock::new();
        let check = |r: &CodeRecord| Self::code_check(client, &req, verifier.as_ref(), jkt, r, now);
        let accept = |r: &CodeRecord| match check(r) {
            Ok(resources) => {
                let _ = checked.set(resources);
                true
            }
            Err(_) => false,
        };
        let record = match inner.store.consume_code_if(&hash, &accept).await? {
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
            ConsumeOutcome::Refused(r) => {
                let (why, error) = check(&r).err().unwrap_or(("code refused", ApiError::InvalidGrant));
                tracing::info!(target: "security", client_id = %client.client_id, reason = why, "code exchange refused");
                return Err(error);
            }
        };
        if inner.users.behind_login(&record.sub, record.auth_time).await?.is_none() {
            tracing::info!(target: "security", client_id = %client.client_id,
                reason = "the user was disabled or deleted, or changed their password, since the login",
                "code exchange refused");
            return Err(ApiError::InvalidGrant);
        }
        // Worked out by the check that let the code be consumed: `consume_code_if` consumes
        // only what `accept` took (the store contract tests hold both stores to it).
        let resources = checked
            .into_inner()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a code was consumed without its check")))?;
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
        inner.caches.access_tokens.insert(access_record.hash, access_record);
        Ok(response)
    }

    /// The resources of the token `code` gives this request of `client`; or why it may not be
    /// exchanged, and the answer. Each reason is one its sender can correct or an attacker can provoke, so none of
    /// them consumes the code (RFC 6749 section 4.1.3, RFC 7636 section 4.6, RFC 9449 section 10,
    /// RFC 8707). The user's state is checked after the code is consumed: no request changes it.
    ///
    /// A wrong verifier or redirect_uri does not burn the code either. Burning would not make a
    /// stolen code safer (without the verifier it is useless: RFC 9700 section 4.5.3.1 leans on
    /// PKCE for that, and guessing a verifier of RFC 7636 section 7.1's entropy within
    /// `--code-ttl` is hopeless), but it would let a failed code injection, or anyone who saw
    /// the code, void the rightful client's authorization. RFC 6749 section 4.1.2 asks only
    /// that a code be used once, which the atomic consume keeps. (oidc-provider checks these
    /// before it consumes a code too.)
    fn code_check(
        client: &Client,
        req: &TokenRequest,
        verifier: Option<&CodeVerifier>,
        jkt: Option<&str>,
        code: &CodeRecord,
        now: Timestamp,
    ) -> Result<Resources, (&'static str, ApiError)> {
        let grant = |why| Err((why, ApiError::InvalidGrant));
        if code.client_id != client.client_id {
            return grant("code was issued to another client");
        }
        if code.expires_at <= now {
            return grant("code expired");
        }
        match (&req.redirect_uri, code.redirect_uri_given) {
            (Some(uri), _) if *uri != code.redirect_uri => return grant("redirect_uri differs from authorize"),
            (None, true) => return grant("redirect_uri missing but was given at authorize"),
            _ => {}
        }
        match (&code.challenge, verifier) {
            (Some(challenge), Some(verifier)) if !crypto::verify_pkce_s256(verifier, challenge) => {
                return grant("PKCE verifier does not match the challenge");
            }
            (Some(_), None) => return grant("PKCE verifier missing"),
            (None, Some(_)) => return grant("PKCE verifier sent but no challenge was given (downgrade)"),
            _ => {}
        }
        // RFC 9449 section 10: a code bound at authorize needs a proof of that key.
        if code.dpop_jkt.is_some() && code.dpop_jkt.as_deref() != jkt {
            return Err((
                "code exchange without a DPoP proof of the key named at authorize",
                ApiError::InvalidDpopProof { at_resource: false },
            ));
        }
        Self::token_resources(&req.resources, &code.resources, client)
            .map_err(|e| ("code exchange for a resource the grant does not name", e))
    }
}
