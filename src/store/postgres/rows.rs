//! Between rows and records: reading the store's records out of result rows, and laying records
//! out as statement parameters in column order.

use std::sync::Arc;

use tokio_postgres::Row;

use super::pool::db_err;
use crate::domain::{CodeChallenge, GrantId, Resources, Scope, Timestamp, TokenHash};
use crate::jose::Alg;
use crate::store::{
    AccessTokenRecord, ClientRecord, CodeRecord, ConsentRecord, GrantRecord, PushedRequestRecord, RefreshTokenRecord,
    SessionRecord, SigningKeyRecord, StoreError, StoreResult, UserRecord,
};

// === rows to records ===

pub fn hash(row: &Row, col: &str) -> StoreResult<TokenHash> {
    let v: Vec<u8> = row.try_get(col).map_err(db_err)?;
    v.try_into()
        .map(TokenHash)
        .map_err(|_| StoreError::Internal(anyhow::anyhow!("{col} is not 32 bytes")))
}

fn grant_id(v: Vec<u8>) -> StoreResult<GrantId> {
    v.try_into()
        .map(GrantId)
        .map_err(|_| StoreError::Internal(anyhow::anyhow!("grant id is not 16 bytes")))
}

fn scope(row: &Row) -> StoreResult<Scope> {
    let s: String = row.try_get("scope").map_err(db_err)?;
    Scope::parse(&s).ok_or_else(|| StoreError::Internal(anyhow::anyhow!("stored scope is malformed")))
}

fn resources(row: &Row) -> StoreResult<Resources> {
    let s: &str = row.try_get("resources").map_err(db_err)?;
    Resources::from_stored(s).ok_or_else(|| StoreError::Internal(anyhow::anyhow!("stored resources are malformed")))
}

fn ts(row: &Row, col: &str) -> StoreResult<Timestamp> {
    row.try_get::<_, i64>(col).map(Timestamp::from_millis).map_err(db_err)
}

fn opt_ts(row: &Row, col: &str) -> StoreResult<Option<Timestamp>> {
    row.try_get::<_, Option<i64>>(col)
        .map(|v| v.map(Timestamp::from_millis))
        .map_err(db_err)
}

fn text(row: &Row, col: &str) -> StoreResult<String> {
    row.try_get(col).map_err(db_err)
}

fn shared_text(row: &Row, col: &str) -> StoreResult<Arc<str>> {
    row.try_get::<_, &str>(col).map(Arc::from).map_err(db_err)
}

fn opt_shared_text(row: &Row, col: &str) -> StoreResult<Option<Arc<str>>> {
    row.try_get::<_, Option<&str>>(col)
        .map(|v| v.map(Arc::from))
        .map_err(db_err)
}

pub fn user_row(row: &Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        sub: shared_text(row, "sub")?,
        username: text(row, "username")?,
        password_hash: text(row, "password_hash")?,
        name: row.try_get("name").map_err(db_err)?,
        email: row.try_get("email").map_err(db_err)?,
        email_verified: row.try_get("email_verified").map_err(db_err)?,
        disabled: row.try_get("disabled").map_err(db_err)?,
        not_before: ts(row, "not_before")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub fn client_row(row: &Row) -> StoreResult<ClientRecord> {
    let token: Option<Vec<u8>> = row.try_get("registration_token").map_err(db_err)?;
    let registration_token = match token {
        Some(_) => Some(hash(row, "registration_token")?),
        None => None,
    };
    Ok(ClientRecord {
        client_id: shared_text(row, "client_id")?,
        metadata: text(row, "metadata")?,
        registration_token,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub fn session_row(row: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        hash: hash(row, "hash")?,
        sub: shared_text(row, "sub")?,
        auth_time: ts(row, "auth_time")?,
        expires_at: ts(row, "expires_at")?,
    })
}

pub fn code_row(row: &Row) -> StoreResult<CodeRecord> {
    let challenge: Option<String> = row.try_get("challenge").map_err(db_err)?;
    Ok(CodeRecord {
        hash: hash(row, "hash")?,
        client_id: shared_text(row, "client_id")?,
        redirect_uri: text(row, "redirect_uri")?,
        redirect_uri_given: row.try_get("redirect_uri_given").map_err(db_err)?,
        sub: shared_text(row, "sub")?,
        scope: scope(row)?,
        challenge: challenge.as_deref().and_then(CodeChallenge::parse),
        grant_id: grant_id(row.try_get("grant_id").map_err(db_err)?)?,
        auth_time: ts(row, "auth_time")?,
        expires_at: ts(row, "expires_at")?,
        consumed: row.try_get("consumed").map_err(db_err)?,
        nonce: row.try_get("nonce").map_err(db_err)?,
        sid: opt_shared_text(row, "sid")?,
        resources: resources(row)?,
        dpop_jkt: row.try_get("dpop_jkt").map_err(db_err)?,
    })
}

pub fn pushed_row(row: &Row) -> StoreResult<PushedRequestRecord> {
    Ok(PushedRequestRecord {
        hash: hash(row, "hash")?,
        client_id: shared_text(row, "client_id")?,
        params: text(row, "params")?,
        expires_at: ts(row, "expires_at")?,
        consumed: row.try_get("consumed").map_err(db_err)?,
    })
}

pub fn grant_row(row: &Row) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        id: grant_id(row.try_get("id").map_err(db_err)?)?,
        client_id: shared_text(row, "client_id")?,
        sub: shared_text(row, "sub")?,
        scope: scope(row)?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
        auth_time: opt_ts(row, "auth_time")?,
        sid: opt_shared_text(row, "sid")?,
        resources: resources(row)?,
    })
}

pub fn access_row(row: &Row) -> StoreResult<AccessTokenRecord> {
    let grant: Option<Vec<u8>> = row.try_get("grant_id").map_err(db_err)?;
    Ok(AccessTokenRecord {
        hash: hash(row, "hash")?,
        client_id: shared_text(row, "client_id")?,
        sub: row.try_get::<_, Option<&str>>("sub").map_err(db_err)?.map(Arc::from),
        scope: scope(row)?,
        grant_id: grant.map(grant_id).transpose()?,
        issued_at: ts(row, "issued_at")?,
        expires_at: ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
        resources: resources(row)?,
        jkt: row.try_get("jkt").map_err(db_err)?,
    })
}

pub fn refresh_row(row: &Row) -> StoreResult<RefreshTokenRecord> {
    let generation: i64 = row.try_get("generation").map_err(db_err)?;
    Ok(RefreshTokenRecord {
        family: hash(row, "family")?,
        hash: hash(row, "hash")?,
        generation: u32::try_from(generation)
            .map_err(|_| StoreError::Internal(anyhow::anyhow!("refresh generation out of range")))?,
        client_id: shared_text(row, "client_id")?,
        sub: shared_text(row, "sub")?,
        scope: scope(row)?,
        grant_id: grant_id(row.try_get("grant_id").map_err(db_err)?)?,
        issued_at: ts(row, "issued_at")?,
        expires_at: ts(row, "expires_at")?,
        auth_time: opt_ts(row, "auth_time")?,
        sid: opt_shared_text(row, "sid")?,
        resources: resources(row)?,
        jkt: row.try_get("jkt").map_err(db_err)?,
    })
}

pub fn consent_row(row: &Row) -> StoreResult<ConsentRecord> {
    Ok(ConsentRecord {
        sub: shared_text(row, "sub")?,
        client_id: shared_text(row, "client_id")?,
        scope: scope(row)?,
        granted_at: ts(row, "granted_at")?,
    })
}

pub fn signing_key_row(row: &Row) -> StoreResult<SigningKeyRecord> {
    let alg = text(row, "alg")?;
    Ok(SigningKeyRecord {
        kid: text(row, "kid")?,
        alg: Alg::parse(&alg).ok_or_else(|| StoreError::Internal(anyhow::anyhow!("unknown key algorithm {alg:?}")))?,
        generation: row.try_get("generation").map_err(db_err)?,
        created_at: ts(row, "created_at")?,
        active_from: ts(row, "active_from")?,
        withdrawn_at: opt_ts(row, "withdrawn_at")?,
        public_jwk: text(row, "public_jwk")?,
        sealed_private_key: row.try_get("sealed_private_key").map_err(db_err)?,
    })
}

// === records to parameters ===

pub type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// A grant's columns as statement parameters, in `grants` column order.
pub struct GrantColumns<'a> {
    id: &'a [u8],
    client_id: &'a str,
    sub: &'a str,
    scope: &'a str,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    auth_time: Option<i64>,
    sid: Option<&'a str>,
    resources: &'a str,
}

impl<'a> GrantColumns<'a> {
    pub fn of(g: &'a GrantRecord) -> Self {
        Self {
            id: &g.id.0,
            client_id: &g.client_id,
            sub: &g.sub,
            scope: g.scope.as_str(),
            created_at: g.created_at.millis(),
            expires_at: g.expires_at.millis(),
            revoked_at: g.revoked_at.map(Timestamp::millis),
            auth_time: g.auth_time.map(Timestamp::millis),
            sid: g.sid.as_deref(),
            resources: g.resources.as_str(),
        }
    }

    /// The same grant, revoked at `at` (a revocation's tombstone).
    pub fn revoked_at(self, at: Timestamp) -> Self {
        Self {
            revoked_at: Some(at.millis()),
            ..self
        }
    }

    pub fn params(&self) -> [Param<'_>; 10] {
        [
            &self.id,
            &self.client_id,
            &self.sub,
            &self.scope,
            &self.created_at,
            &self.expires_at,
            &self.revoked_at,
            &self.auth_time,
            &self.sid,
            &self.resources,
        ]
    }
}

/// An access token's columns as statement parameters, in [`INSERT_ACCESS`](super::sql::INSERT_ACCESS) order.
pub struct AccessColumns<'a> {
    hash: &'a [u8],
    client_id: &'a str,
    sub: Option<&'a str>,
    scope: &'a str,
    grant_id: Option<&'a [u8]>,
    issued_at: i64,
    expires_at: i64,
    resources: &'a str,
    jkt: Option<&'a str>,
}

impl<'a> AccessColumns<'a> {
    pub fn of(a: &'a AccessTokenRecord) -> Self {
        Self {
            hash: &a.hash.0,
            client_id: &a.client_id,
            sub: a.sub.as_deref(),
            scope: a.scope.as_str(),
            grant_id: a.grant_id.as_ref().map(|id| id.0.as_slice()),
            issued_at: a.issued_at.millis(),
            expires_at: a.expires_at.millis(),
            resources: a.resources.as_str(),
            jkt: a.jkt.as_deref(),
        }
    }

    pub fn params(&self) -> [Param<'_>; 9] {
        [
            &self.hash,
            &self.client_id,
            &self.sub,
            &self.scope,
            &self.grant_id,
            &self.issued_at,
            &self.expires_at,
            &self.resources,
            &self.jkt,
        ]
    }
}
