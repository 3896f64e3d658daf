//! [`Store`] for [`PostgresStore`]: each operation one statement of [`sql`] where it can be, so that
//! what must be atomic across nodes is.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::pool::db_err;
use super::rows::{
    AccessColumns, GrantColumns, Param, access_row, client_row, code_row, consent_row, grant_row, hash, pushed_row,
    refresh_row, session_row, signing_key_row, user_row,
};
use super::{PostgresStore, listen, sql};
use crate::domain::{GrantId, Timestamp, TokenHash};
use crate::store::{
    AccessTokenRecord, ClientRecord, CodeCheck, CodeRecord, ConsentRecord, ConsumeOutcome, GrantOwner, GrantRecord,
    Invalidation, InvalidationFeed, InvalidationSink, PoolStatus, PushedRequestRecord, RecordKind, RefreshTokenRecord,
    RotateOutcome, SessionRecord, SigningKeyRecord, Store, StoreKind, StoreResult, UsedJtiRecord, UserKey, UserRecord,
    UserUpdate,
};

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn pool_status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            size: s.max_size,
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
            waiting: s.waiting,
        }
    }

    fn close(&self) {
        self.pool.close();
    }

    fn invalidations(
        &self,
        sink: Arc<dyn InvalidationSink>,
        connected: watch::Sender<bool>,
        cancel: CancellationToken,
    ) -> Option<InvalidationFeed> {
        Some(Box::pin(listen::listen(self.listener.clone(), sink, connected, cancel)))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.query_opt(sql::PING, &[]).await.map(|_| ())
    }

    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.execute(
            sql::INSERT_SESSION,
            &[
                &s.hash.0.as_slice(),
                &&*s.sub,
                &s.auth_time.millis(),
                &s.expires_at.millis(),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_session(&self, h: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        self.get_one(sql::GET_SESSION, &h.0, session_row).await
    }

    async fn delete_session(&self, h: &TokenHash) -> StoreResult<bool> {
        let n = self
            .execute(
                sql::DELETE_SESSION,
                &[&h.0.as_slice(), &Invalidation::Session(*h).encode()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn insert_code(&self, c: &CodeRecord) -> StoreResult<()> {
        let challenge = c.challenge.as_ref().map(|c| c.as_str().to_owned());
        self.execute(
            sql::INSERT_CODE,
            &[
                &c.hash.0.as_slice(),
                &&*c.client_id,
                &c.redirect_uri,
                &c.redirect_uri_given,
                &&*c.sub,
                &c.scope.as_str(),
                &challenge,
                &c.grant_id.0.as_slice(),
                &c.auth_time.millis(),
                &c.expires_at.millis(),
                &c.nonce,
                &c.sid.as_deref(),
                &c.resources.as_str(),
                &c.dpop_jkt,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn insert_pushed_request(&self, p: &PushedRequestRecord) -> StoreResult<()> {
        let params: [Param<'_>; 4] = [&p.hash.0.as_slice(), &&*p.client_id, &p.params, &p.expires_at.millis()];
        self.execute(sql::INSERT_PUSHED, &params).await.map(|_| ())
    }

    async fn get_pushed_request(&self, h: &TokenHash) -> StoreResult<Option<PushedRequestRecord>> {
        self.get_one(sql::GET_PUSHED, &h.0, pushed_row).await
    }

    async fn consume_pushed_request(&self, h: &TokenHash) -> StoreResult<bool> {
        Ok(self.query_opt(sql::CONSUME_PUSHED, &[&h.0.as_slice()]).await?.is_some())
    }

    async fn spend_jti(&self, jti: &UsedJtiRecord) -> StoreResult<bool> {
        let row = self
            .query_opt(sql::SPEND_JTI, &[&jti.hash.0.as_slice(), &jti.expires_at.millis()])
            .await?;
        Ok(row.is_some())
    }

    async fn consume_code(&self, h: &TokenHash) -> StoreResult<ConsumeOutcome> {
        let conn = self.conn().await?;
        let won = conn.prepare_cached(sql::CONSUME_CODE).await.map_err(db_err)?;
        if let Some(row) = conn.query_opt(&won, &[&h.0.as_slice()]).await.map_err(db_err)? {
            return Ok(ConsumeOutcome::Consumed(code_row(&row)?));
        }
        let get = conn.prepare_cached(sql::GET_CODE).await.map_err(db_err)?;
        Ok(match conn.query_opt(&get, &[&h.0.as_slice()]).await.map_err(db_err)? {
            Some(row) => ConsumeOutcome::AlreadyConsumed(code_row(&row)?),
            None => ConsumeOutcome::NotFound,
        })
    }

    async fn consume_code_if(&self, h: &TokenHash, accept: &CodeCheck<'_>) -> StoreResult<ConsumeOutcome> {
        let conn = self.conn().await?;
        let get = conn.prepare_cached(sql::GET_CODE).await.map_err(db_err)?;
        let Some(row) = conn.query_opt(&get, &[&h.0.as_slice()]).await.map_err(db_err)? else {
            return Ok(ConsumeOutcome::NotFound);
        };
        let code = code_row(&row)?;
        if code.consumed {
            return Ok(ConsumeOutcome::AlreadyConsumed(code));
        }
        if !accept(&code) {
            return Ok(ConsumeOutcome::Refused(code));
        }
        // Nothing of a code changes but `consumed`: what was checked is what is consumed, and of
        // concurrent callers on any nodes exactly one wins here; the others saw a replay.
        let won = conn.prepare_cached(sql::CONSUME_CODE).await.map_err(db_err)?;
        Ok(match conn.query_opt(&won, &[&h.0.as_slice()]).await.map_err(db_err)? {
            Some(_) => ConsumeOutcome::Consumed(code),
            None => ConsumeOutcome::AlreadyConsumed(code),
        })
    }

    async fn resume_pushed_request(&self, p: &PushedRequestRecord) -> StoreResult<bool> {
        let params: [Param<'_>; 3] = [&p.hash.0.as_slice(), &p.params, &p.expires_at.millis()];
        Ok(self.query_opt(sql::RESUME_PUSHED, &params).await?.is_some())
    }

    async fn insert_grant_tokens(
        &self,
        g: &GrantRecord,
        a: &AccessTokenRecord,
        r: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql::INSERT_GRANT_TOKENS).await.map_err(db_err)?;
        let access = AccessColumns::of(a);
        let grant = GrantColumns::of(g);
        let (r_family, r_hash, r_generation) = (
            r.map(|r| r.family.0.as_slice()),
            r.map(|r| r.hash.0.as_slice()),
            r.map(|r| i64::from(r.generation)),
        );
        let (r_client, r_sub, r_scope, r_grant, r_issued, r_expires) = (
            r.map(|r| &*r.client_id),
            r.map(|r| &*r.sub),
            r.map(|r| r.scope.as_str()),
            r.map(|r| r.grant_id.0.as_slice()),
            r.map(|r| r.issued_at.millis()),
            r.map(|r| r.expires_at.millis()),
        );
        let (r_auth_time, r_sid, r_resources, r_jkt) = (
            r.and_then(|r| r.auth_time.map(Timestamp::millis)),
            r.and_then(|r| r.sid.as_deref()),
            r.map(|r| r.resources.as_str()),
            r.and_then(|r| r.jkt.as_deref()),
        );
        let refresh: [Param<'_>; 13] = [
            &r_family,
            &r_hash,
            &r_generation,
            &r_client,
            &r_sub,
            &r_scope,
            &r_grant,
            &r_issued,
            &r_expires,
            &r_auth_time,
            &r_sid,
            &r_resources,
            &r_jkt,
        ];
        let params: Vec<Param<'_>> = grant
            .params()
            .into_iter()
            .chain(access.params())
            .chain(refresh)
            .collect();
        conn.execute(&stmt, &params).await.map_err(db_err)?;
        Ok(())
    }

    async fn insert_access_token(&self, a: &AccessTokenRecord) -> StoreResult<()> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql::INSERT_ACCESS).await.map_err(db_err)?;
        conn.execute(&stmt, &AccessColumns::of(a).params())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_access_token(&self, h: &TokenHash) -> StoreResult<Option<AccessTokenRecord>> {
        self.get_one(sql::GET_ACCESS, &h.0, access_row).await
    }

    async fn get_refresh_token(&self, family: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        self.get_one(sql::GET_REFRESH, &family.0, refresh_row).await
    }

    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        self.get_one(sql::GET_GRANT, &id.0, grant_row).await
    }

    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        a: &AccessTokenRecord,
        next: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql::ROTATE_REFRESH).await.map_err(db_err)?;
        let access = AccessColumns::of(a);
        let payload = Invalidation::RefreshToken(next.family).encode();
        let head: [Param<'_>; 5] = [
            &next.family.0.as_slice(),
            &presented.0.as_slice(),
            &next.hash.0.as_slice(),
            &i64::from(next.generation),
            &next.issued_at.millis(),
        ];
        let params: Vec<Param<'_>> = head
            .into_iter()
            .chain(access.params())
            .chain([&payload as Param<'_>])
            .collect();
        let won = conn.query(&stmt, &params).await.map_err(db_err)?;
        if !won.is_empty() {
            return Ok(RotateOutcome::Rotated);
        }
        // Lost: another token of the family is current (a replay or a race), or the family is
        // gone (swept, purged).
        let exists = conn
            .query_opt(sql::REFRESH_EXISTS, &[&next.family.0.as_slice()])
            .await
            .map_err(db_err)?;
        Ok(if exists.is_some() {
            RotateOutcome::AlreadyRotated
        } else {
            RotateOutcome::NotFound
        })
    }

    async fn revoke_access_token(&self, h: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        let n = self
            .execute(
                sql::REVOKE_ACCESS,
                &[&h.0.as_slice(), &now.millis(), &Invalidation::AccessToken(*h).encode()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_unstored_access_token(&self, a: &AccessTokenRecord, now: Timestamp) -> StoreResult<()> {
        let payload = Invalidation::AccessToken(a.hash).encode();
        let revoked_at = now.millis();
        let columns = AccessColumns::of(a);
        let params: Vec<Param<'_>> = columns
            .params()
            .into_iter()
            .chain([&revoked_at as Param<'_>, &payload as Param<'_>])
            .collect();
        self.query_opt(sql::REVOKE_UNSTORED_ACCESS, &params).await.map(|_| ())
    }

    async fn revoke_grant(&self, g: &GrantRecord, now: Timestamp) -> StoreResult<bool> {
        let tombstone = GrantColumns::of(g).revoked_at(now);
        let payload = Invalidation::Grant(g.id).encode();
        let params: Vec<Param<'_>> = tombstone.params().into_iter().chain([&payload as Param<'_>]).collect();
        let row = self.query_opt(sql::REVOKE_GRANT, &params).await?;
        Ok(row.is_some())
    }

    async fn revoke_session_grants(&self, sid: &str, now: Timestamp) -> StoreResult<Vec<GrantId>> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql::REVOKE_SESSION_GRANTS).await.map_err(db_err)?;
        let rows = conn.query(&stmt, &[&sid, &now.millis()]).await.map_err(db_err)?;
        rows.iter().map(grant_id_of).collect()
    }

    async fn purge_grant_tokens(&self, id: &GrantId, limit: usize) -> StoreResult<Vec<TokenHash>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn().await?;
        let mut out = Vec::new();
        for (table, key) in [("access_tokens", "hash"), ("refresh_tokens", "family")] {
            let left = limit - i64::try_from(out.len()).unwrap_or(0);
            if left <= 0 {
                break;
            }
            let stmt = conn
                .prepare_cached(&sql::purge_grant_tokens(table, key))
                .await
                .map_err(db_err)?;
            for row in conn.query(&stmt, &[&id.0.as_slice(), &left]).await.map_err(db_err)? {
                out.push(hash(&row, key)?);
            }
        }
        Ok(out)
    }

    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize> {
        let (table, key) = match kind {
            RecordKind::Sessions => ("sessions", "hash"),
            RecordKind::Codes => ("codes", "hash"),
            RecordKind::AccessTokens => ("access_tokens", "hash"),
            RecordKind::RefreshTokens => ("refresh_tokens", "family"),
            RecordKind::Grants => ("grants", "id"),
            RecordKind::PushedRequests => ("pushed_requests", "hash"),
            RecordKind::UsedJtis => ("used_jtis", "hash"),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let n = self
            .execute(&sql::delete_expired(table, key), &[&now.millis(), &limit])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn get_consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<ConsentRecord>> {
        self.query_opt(sql::GET_CONSENT, &[&sub, &client_id])
            .await?
            .as_ref()
            .map(consent_row)
            .transpose()
    }

    async fn put_consent(&self, c: &ConsentRecord) -> StoreResult<()> {
        self.execute(
            sql::PUT_CONSENT,
            &[&&*c.sub, &&*c.client_id, &c.scope.as_str(), &c.granted_at.millis()],
        )
        .await
        .map(|_| ())
    }

    async fn insert_user(&self, u: &UserRecord) -> StoreResult<bool> {
        let payload = Invalidation::User(Arc::clone(&u.sub)).encode();
        let n = self
            .execute(
                sql::INSERT_USER,
                &[
                    &&*u.sub,
                    &u.username,
                    &u.password_hash,
                    &u.name,
                    &u.email,
                    &u.email_verified,
                    &u.disabled,
                    &u.not_before.millis(),
                    &u.created_at.millis(),
                    &u.updated_at.millis(),
                    &payload,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn get_user(&self, key: UserKey<'_>) -> StoreResult<Option<UserRecord>> {
        let (stmt, value) = match key {
            UserKey::Sub(sub) => (sql::GET_USER_BY_SUB, sub),
            UserKey::Username(name) => (sql::GET_USER_BY_USERNAME, name),
        };
        self.query_opt(stmt, &[&value])
            .await?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        self.list(sql::LIST_USERS, after, limit, user_row).await
    }

    async fn update_user(&self, sub: &str, c: &UserUpdate) -> StoreResult<Option<UserRecord>> {
        let payload = Invalidation::User(Arc::from(sub)).encode();
        let row = self
            .query_opt(
                sql::UPDATE_USER,
                &[
                    &sub,
                    &c.password_hash,
                    &c.name.is_some(),
                    &c.name.as_ref().and_then(Option::as_deref),
                    &c.email.is_some(),
                    &c.email.as_ref().and_then(Option::as_deref),
                    &c.email_verified,
                    &c.disabled,
                    &c.not_before.map(Timestamp::millis),
                    &c.updated_at.millis(),
                    &payload,
                ],
            )
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn delete_user(&self, sub: &str) -> StoreResult<bool> {
        let payload = Invalidation::User(Arc::from(sub)).encode();
        Ok(self.execute(sql::DELETE_USER, &[&sub, &payload]).await? == 1)
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<bool> {
        let token = c.registration_token.map(|h| h.0.to_vec());
        let payload = Invalidation::Client(Arc::clone(&c.client_id)).encode();
        let n = self
            .execute(
                sql::INSERT_CLIENT,
                &[
                    &&*c.client_id,
                    &c.metadata,
                    &token,
                    &c.created_at.millis(),
                    &c.updated_at.millis(),
                    &payload,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        self.query_opt(sql::GET_CLIENT, &[&client_id])
            .await?
            .as_ref()
            .map(client_row)
            .transpose()
    }

    async fn list_clients(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ClientRecord>> {
        self.list(sql::LIST_CLIENTS, after, limit, client_row).await
    }

    async fn update_client(&self, c: &ClientRecord) -> StoreResult<bool> {
        let token = c.registration_token.map(|h| h.0.to_vec());
        let payload = Invalidation::Client(Arc::clone(&c.client_id)).encode();
        let n = self
            .execute(
                sql::UPDATE_CLIENT,
                &[&&*c.client_id, &c.metadata, &token, &c.updated_at.millis(), &payload],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let payload = Invalidation::Client(Arc::from(client_id)).encode();
        Ok(self.execute(sql::DELETE_CLIENT, &[&client_id, &payload]).await? == 1)
    }

    async fn revoke_grants_of(
        &self,
        owner: GrantOwner<'_>,
        before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<GrantId>> {
        let (column, key) = match owner {
            GrantOwner::User(sub) => ("sub", sub),
            GrantOwner::Client(id) => ("client_id", id),
        };
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(&sql::revoke_grants_of(column))
            .await
            .map_err(db_err)?;
        let rows = conn
            .query(&stmt, &[&key, &now.millis(), &before.millis()])
            .await
            .map_err(db_err)?;
        rows.iter().map(grant_id_of).collect()
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql::SIGNING_KEYS).await.map_err(db_err)?;
        let rows = conn.query(&stmt, &[]).await.map_err(db_err)?;
        rows.iter().map(signing_key_row).collect()
    }

    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> StoreResult<bool> {
        let n = self
            .execute(
                sql::INSERT_SIGNING_KEY,
                &[
                    &k.kid,
                    &k.alg.as_str(),
                    &k.generation,
                    &k.created_at.millis(),
                    &k.active_from.millis(),
                    &k.withdrawn_at.map(Timestamp::millis),
                    &k.public_jwk,
                    &k.sealed_private_key,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn update_signing_key(
        &self,
        kid: &str,
        active_from: Option<Timestamp>,
        withdrawn_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        self.execute(
            sql::UPDATE_SIGNING_KEY,
            &[
                &kid,
                &active_from.map(Timestamp::millis),
                &withdrawn_at.map(Timestamp::millis),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn delete_signing_key(&self, kid: &str) -> StoreResult<()> {
        self.execute(sql::DELETE_SIGNING_KEY, &[&kid]).await.map(|_| ())
    }
}

fn grant_id_of(row: &tokio_postgres::Row) -> StoreResult<GrantId> {
    let id: Vec<u8> = row.try_get("id").map_err(db_err)?;
    id.try_into()
        .map(GrantId)
        .map_err(|_| crate::store::StoreError::Internal(anyhow::anyhow!("grant id is not 16 bytes")))
}
