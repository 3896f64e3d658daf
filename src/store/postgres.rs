//! The PostgreSQL store, for several nodes sharing one database.
//!
//! - Pooled access (deadpool-postgres): at most `--pool-size` connections, a caller waits at most
//!   `--pool-timeout` for one, and the wait is measured (`authplane_store_pool_wait_seconds`, and
//!   `pool_wait_ms` on the store span). Statements are prepared once per connection.
//! - Atomicity across nodes: consuming a code and rotating a refresh token are single
//!   conditional `UPDATE … RETURNING` statements, so of N concurrent callers on any nodes exactly
//!   one wins.
//! - Cross-node invalidation: every change another node may have cached (logout, revocation,
//!   rotation) sends `NOTIFY authplane_invalidate` in the same statement or transaction, so the
//!   notification goes out exactly when the change commits. [`listen`] receives them on a
//!   dedicated connection.
//! - Migrations are embedded and applied at start-up under an advisory lock, so nodes starting
//!   together apply them once.
//! - The sweeper deletes in batches through the expiry indexes with `FOR UPDATE SKIP LOCKED`, so
//!   nodes sweeping at once never wait for each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use metrics::Histogram;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use tokio_util::sync::CancellationToken;

use super::{
    AccessTokenRecord, CodeRecord, ConsumeOutcome, GrantRecord, Invalidation, PoolStatus, RecordKind,
    RefreshTokenRecord, RotateOutcome, SessionRecord, Store, StoreError, StoreResult,
};
use crate::domain::{CodeChallenge, GrantId, Scope, Timestamp, TokenHash};
use crate::telemetry::{self, Metrics};

/// The NOTIFY channel of cross-node cache invalidation.
pub const CHANNEL: &str = "authplane_invalidate";

/// Embedded migrations, applied in order; a version is never edited once released.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/0001_initial.sql"))];

/// Key of the advisory lock that serialises migrations across nodes ("authplan").
const MIGRATION_LOCK: i64 = 0x6175_7468_706c_616e;

pub struct PostgresStore {
    pool: Pool,
    pool_wait: Histogram,
}

/// Classifies a driver error: a lost or refused connection is `Unavailable` (503, retry), a
/// statement the database rejected is `Internal` (500).
fn db_err(e: tokio_postgres::Error) -> StoreError {
    let unavailable = e.is_closed()
        || e.as_db_error().is_none()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
        });
    if unavailable {
        StoreError::Unavailable(e.into())
    } else {
        StoreError::Internal(e.into())
    }
}

fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_err(e),
        PoolError::Timeout(_) | PoolError::Closed => StoreError::Unavailable(e.into()),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => StoreError::Internal(e.into()),
    }
}

/// The connection settings of `url`, with the timeouts and keepalives authplane wants.
pub fn pg_config(url: &str, connect_timeout: Duration) -> anyhow::Result<tokio_postgres::Config> {
    let mut cfg: tokio_postgres::Config = url.parse()?;
    cfg.connect_timeout(connect_timeout);
    cfg.keepalives_idle(Duration::from_secs(10));
    if cfg.get_application_name().is_none() {
        cfg.application_name("authplane");
    }
    Ok(cfg)
}

impl PostgresStore {
    /// Builds the pool and applies pending migrations. Fails when the database is unreachable:
    /// a node should not start without its store.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        pool_timeout: Duration,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let cfg = pg_config(url, pool_timeout)?;
        let manager = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(pool_timeout))
            .create_timeout(Some(pool_timeout))
            .recycle_timeout(Some(pool_timeout))
            .runtime(Runtime::Tokio1)
            .build()?;
        let store = Self {
            pool,
            pool_wait: metrics.histogram(telemetry::POOL_WAIT, &[]),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the embedded migrations not applied yet, holding an advisory lock so that nodes
    /// starting together do it once.
    async fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let res = async {
            conn.batch_execute(
                "CREATE TABLE IF NOT EXISTS authplane_migrations (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
            for (version, sql) in MIGRATIONS {
                let done = conn
                    .query_opt("SELECT 1 FROM authplane_migrations WHERE version = $1", &[version])
                    .await?;
                if done.is_some() {
                    continue;
                }
                let tx = conn.transaction().await?;
                tx.batch_execute(sql).await?;
                tx.execute("INSERT INTO authplane_migrations (version) VALUES ($1)", &[version])
                    .await?;
                tx.commit().await?;
                tracing::info!(version, "applied migration");
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        res
    }

    /// A pooled connection; the wait is measured and put on the current (store) span.
    async fn conn(&self) -> StoreResult<Object> {
        let start = Instant::now();
        let conn = self.pool.get().await;
        let waited = start.elapsed();
        self.pool_wait.record(waited.as_secs_f64());
        crate::queue_delay::record(waited);
        tracing::Span::current().record("pool_wait_ms", waited.as_secs_f64() * 1000.0);
        conn.map_err(pool_err)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Option<Row>> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql).await.map_err(db_err)?;
        conn.query_opt(&stmt, params).await.map_err(db_err)
    }

    /// One row by key, mapped; `None` when there is none.
    async fn get_one<T>(&self, sql: &str, key: &[u8], map: fn(&Row) -> StoreResult<T>) -> StoreResult<Option<T>> {
        self.query_opt(sql, &[&key]).await?.as_ref().map(map).transpose()
    }

    async fn execute(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> StoreResult<u64> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql).await.map_err(db_err)?;
        conn.execute(&stmt, params).await.map_err(db_err)
    }
}

// === row mapping ===

fn hash(row: &Row, col: &str) -> StoreResult<TokenHash> {
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

fn session_row(row: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        hash: hash(row, "hash")?,
        sub: shared_text(row, "sub")?,
        auth_time: ts(row, "auth_time")?,
        expires_at: ts(row, "expires_at")?,
    })
}

fn code_row(row: &Row) -> StoreResult<CodeRecord> {
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
    })
}

fn grant_row(row: &Row) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        id: grant_id(row.try_get("id").map_err(db_err)?)?,
        client_id: shared_text(row, "client_id")?,
        sub: shared_text(row, "sub")?,
        scope: scope(row)?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
    })
}

fn access_row(row: &Row) -> StoreResult<AccessTokenRecord> {
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
    })
}

fn refresh_row(row: &Row) -> StoreResult<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        hash: hash(row, "hash")?,
        client_id: shared_text(row, "client_id")?,
        sub: shared_text(row, "sub")?,
        scope: scope(row)?,
        grant_id: grant_id(row.try_get("grant_id").map_err(db_err)?)?,
        issued_at: ts(row, "issued_at")?,
        expires_at: ts(row, "expires_at")?,
        rotated_at: opt_ts(row, "rotated_at")?,
    })
}

const INSERT_ACCESS: &str = "INSERT INTO access_tokens (hash, client_id, sub, scope, grant_id, issued_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// A code grant's records in one statement (one round trip, atomic as any statement is): the grant
/// (an existing one, a tombstone from a racing code replay, is kept as it is), its access token
/// and, when `$15` is not null, its refresh token.
const INSERT_GRANT_TOKENS: &str = "WITH g AS (
        INSERT INTO grants (id, client_id, sub, scope, created_at, expires_at, revoked_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING
    ), a AS (
        INSERT INTO access_tokens (hash, client_id, sub, scope, grant_id, issued_at, expires_at)
        VALUES ($8, $9, $10, $11, $12, $13, $14)
    )
    INSERT INTO refresh_tokens (hash, client_id, sub, scope, grant_id, issued_at, expires_at)
    SELECT $15::bytea, $16::text, $17::text, $18::text, $19::bytea, $20::bigint, $21::bigint
    WHERE $15::bytea IS NOT NULL";

/// A refresh token's rotation in one statement (one round trip instead of a six-step transaction):
/// the old token is marked rotated only if it was not already (the row lock makes a concurrent
/// rotation wait, then find it rotated), and only then are its successors inserted and the other
/// nodes told (NOTIFY is delivered at commit). No row back: the rotation lost.
const ROTATE_REFRESH: &str = "WITH won AS (
        UPDATE refresh_tokens SET rotated_at = $2 WHERE hash = $1 AND rotated_at IS NULL RETURNING 1
    ), r AS (
        INSERT INTO refresh_tokens (hash, client_id, sub, scope, grant_id, issued_at, expires_at)
        SELECT $3::bytea, $4::text, $5::text, $6::text, $7::bytea, $8::bigint, $9::bigint FROM won
    ), a AS (
        INSERT INTO access_tokens (hash, client_id, sub, scope, grant_id, issued_at, expires_at)
        SELECT $10::bytea, $11::text, $12::text, $13::text, $14::bytea, $15::bigint, $16::bigint FROM won
    )
    SELECT pg_notify('authplane_invalidate', $17) FROM won";

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// A grant's columns as statement parameters, in `grants` column order.
struct GrantColumns<'a> {
    id: &'a [u8],
    client_id: &'a str,
    sub: &'a str,
    scope: &'a str,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl<'a> GrantColumns<'a> {
    fn of(g: &'a GrantRecord) -> Self {
        Self {
            id: &g.id.0,
            client_id: &g.client_id,
            sub: &g.sub,
            scope: g.scope.as_str(),
            created_at: g.created_at.millis(),
            expires_at: g.expires_at.millis(),
            revoked_at: g.revoked_at.map(Timestamp::millis),
        }
    }

    fn params(&self) -> [Param<'_>; 7] {
        [
            &self.id,
            &self.client_id,
            &self.sub,
            &self.scope,
            &self.created_at,
            &self.expires_at,
            &self.revoked_at,
        ]
    }
}

/// An access token's columns as statement parameters, in `INSERT_ACCESS` order.
struct AccessColumns<'a> {
    hash: &'a [u8],
    client_id: &'a str,
    sub: Option<&'a str>,
    scope: &'a str,
    grant_id: Option<&'a [u8]>,
    issued_at: i64,
    expires_at: i64,
}

impl<'a> AccessColumns<'a> {
    fn of(a: &'a AccessTokenRecord) -> Self {
        Self {
            hash: &a.hash.0,
            client_id: &a.client_id,
            sub: a.sub.as_deref(),
            scope: a.scope.as_str(),
            grant_id: a.grant_id.as_ref().map(|id| id.0.as_slice()),
            issued_at: a.issued_at.millis(),
            expires_at: a.expires_at.millis(),
        }
    }

    fn params(&self) -> [Param<'_>; 7] {
        [
            &self.hash,
            &self.client_id,
            &self.sub,
            &self.scope,
            &self.grant_id,
            &self.issued_at,
            &self.expires_at,
        ]
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
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

    async fn ping(&self) -> StoreResult<()> {
        self.query_opt("SELECT 1", &[]).await.map(|_| ())
    }

    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO sessions (hash, sub, auth_time, expires_at) VALUES ($1, $2, $3, $4)",
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
        self.get_one("SELECT * FROM sessions WHERE hash = $1", &h.0, session_row)
            .await
    }

    async fn delete_session(&self, h: &TokenHash) -> StoreResult<bool> {
        let n = self
            .execute(
                "WITH d AS (DELETE FROM sessions WHERE hash = $1 RETURNING 1)
                 SELECT pg_notify('authplane_invalidate', $2) FROM d",
                &[&h.0.as_slice(), &Invalidation::Session(*h).encode()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn insert_code(&self, c: &CodeRecord) -> StoreResult<()> {
        let challenge = c.challenge.as_ref().map(|c| c.as_str().to_owned());
        self.execute(
            "INSERT INTO codes (hash, client_id, redirect_uri, redirect_uri_given, sub, scope, challenge, grant_id,
                                auth_time, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
            ],
        )
        .await
        .map(|_| ())
    }

    async fn consume_code(&self, h: &TokenHash) -> StoreResult<ConsumeOutcome> {
        let conn = self.conn().await?;
        let won = conn
            .prepare_cached("UPDATE codes SET consumed = true WHERE hash = $1 AND NOT consumed RETURNING *")
            .await
            .map_err(db_err)?;
        if let Some(row) = conn.query_opt(&won, &[&h.0.as_slice()]).await.map_err(db_err)? {
            return Ok(ConsumeOutcome::Consumed(code_row(&row)?));
        }
        let get = conn
            .prepare_cached("SELECT * FROM codes WHERE hash = $1")
            .await
            .map_err(db_err)?;
        Ok(match conn.query_opt(&get, &[&h.0.as_slice()]).await.map_err(db_err)? {
            Some(row) => ConsumeOutcome::AlreadyConsumed(code_row(&row)?),
            None => ConsumeOutcome::NotFound,
        })
    }

    async fn insert_grant_tokens(
        &self,
        g: &GrantRecord,
        a: &AccessTokenRecord,
        r: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(INSERT_GRANT_TOKENS).await.map_err(db_err)?;
        let access = AccessColumns::of(a);
        let grant = GrantColumns::of(g);
        let (r_hash, r_client, r_sub, r_scope, r_grant, r_issued, r_expires) = (
            r.map(|r| r.hash.0.as_slice()),
            r.map(|r| &*r.client_id),
            r.map(|r| &*r.sub),
            r.map(|r| r.scope.as_str()),
            r.map(|r| r.grant_id.0.as_slice()),
            r.map(|r| r.issued_at.millis()),
            r.map(|r| r.expires_at.millis()),
        );
        let refresh: [Param<'_>; 7] = [&r_hash, &r_client, &r_sub, &r_scope, &r_grant, &r_issued, &r_expires];
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
        let stmt = conn.prepare_cached(INSERT_ACCESS).await.map_err(db_err)?;
        conn.execute(&stmt, &AccessColumns::of(a).params())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_access_token(&self, h: &TokenHash) -> StoreResult<Option<AccessTokenRecord>> {
        self.get_one("SELECT * FROM access_tokens WHERE hash = $1", &h.0, access_row)
            .await
    }

    async fn get_refresh_token(&self, h: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>> {
        self.get_one("SELECT * FROM refresh_tokens WHERE hash = $1", &h.0, refresh_row)
            .await
    }

    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>> {
        self.get_one("SELECT * FROM grants WHERE id = $1", &id.0, grant_row)
            .await
    }

    async fn rotate_refresh_token(
        &self,
        old: &TokenHash,
        now: Timestamp,
        a: &AccessTokenRecord,
        r: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(ROTATE_REFRESH).await.map_err(db_err)?;
        let access = AccessColumns::of(a);
        let payload = Invalidation::RefreshToken(*old).encode();
        let head: [Param<'_>; 9] = [
            &old.0.as_slice(),
            &now.millis(),
            &r.hash.0.as_slice(),
            &&*r.client_id,
            &&*r.sub,
            &r.scope.as_str(),
            &r.grant_id.0.as_slice(),
            &r.issued_at.millis(),
            &r.expires_at.millis(),
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
        // Lost: already rotated (a replay or a race), or gone (swept, purged).
        let exists = conn
            .query_opt("SELECT 1 FROM refresh_tokens WHERE hash = $1", &[&old.0.as_slice()])
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
                "WITH u AS (UPDATE access_tokens SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL RETURNING 1)
                 SELECT pg_notify('authplane_invalidate', $3) FROM u",
                &[&h.0.as_slice(), &now.millis(), &Invalidation::AccessToken(*h).encode()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_grant(&self, g: &GrantRecord, now: Timestamp) -> StoreResult<bool> {
        // One upsert: revokes the grant, or creates it revoked when a code replay races the
        // first redemption; either way the notification goes out with the commit.
        let tombstone = GrantColumns {
            revoked_at: Some(now.millis()),
            ..GrantColumns::of(g)
        };
        let payload = Invalidation::Grant(g.id).encode();
        let params: Vec<Param<'_>> = tombstone.params().into_iter().chain([&payload as Param<'_>]).collect();
        let row = self
            .query_opt(
                "WITH up AS (
                     INSERT INTO grants (id, client_id, sub, scope, created_at, expires_at, revoked_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO UPDATE SET revoked_at = COALESCE(grants.revoked_at, EXCLUDED.revoked_at)
                     RETURNING 1)
                 SELECT pg_notify('authplane_invalidate', $8) FROM up",
                &params,
            )
            .await?;
        Ok(row.is_some())
    }

    async fn purge_grant_tokens(&self, id: &GrantId, limit: usize) -> StoreResult<Vec<TokenHash>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn().await?;
        let mut out = Vec::new();
        for table in ["access_tokens", "refresh_tokens"] {
            let left = limit - i64::try_from(out.len()).unwrap_or(0);
            if left <= 0 {
                break;
            }
            let sql = format!(
                "DELETE FROM {table} WHERE hash IN
                     (SELECT hash FROM {table} WHERE grant_id = $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING hash"
            );
            let stmt = conn.prepare_cached(&sql).await.map_err(db_err)?;
            for row in conn.query(&stmt, &[&id.0.as_slice(), &left]).await.map_err(db_err)? {
                out.push(hash(&row, "hash")?);
            }
        }
        Ok(out)
    }

    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize> {
        let (table, key) = match kind {
            RecordKind::Sessions => ("sessions", "hash"),
            RecordKind::Codes => ("codes", "hash"),
            RecordKind::AccessTokens => ("access_tokens", "hash"),
            RecordKind::RefreshTokens => ("refresh_tokens", "hash"),
            RecordKind::Grants => ("grants", "id"),
        };
        // The inner select walks the expiry index; SKIP LOCKED lets other nodes sweep alongside.
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN
                 (SELECT {key} FROM {table} WHERE expires_at < $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let n = self.execute(&sql, &[&now.millis(), &limit]).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

// === cross-node invalidation ===

/// Receives invalidations on a dedicated connection (pooled connections do not deliver
/// notifications) and hands each to `apply`. When the connection is lost it is re-established
/// with backoff, until `cancel` fires; once `LISTEN` is in place again, `flush` is called, since
/// notifications may have been missed meanwhile.
///
/// Between the loss and the flush, cached entries keep being served: while the database is down
/// no node can commit a revocation, and what committed just before the loss stays cached at most
/// `--cache-ttl`, the contract's bound.
pub async fn listen<A, F>(
    url: String,
    cancel: CancellationToken,
    apply: A,
    flush: F,
    connected: tokio::sync::watch::Sender<bool>,
) where
    A: AsyncFn(Invalidation),
    F: Fn(),
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let res = listen_once(&url, &cancel, &apply, &flush, &connected).await;
        connected.send_replace(false);
        match res {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "invalidation listener lost its connection"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Returns `Ok` when cancelled, `Err` when the connection failed.
async fn listen_once<A, F>(
    url: &str,
    cancel: &CancellationToken,
    apply: &A,
    flush: &F,
    connected: &tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()>
where
    A: AsyncFn(Invalidation),
    F: Fn(),
{
    let mut cfg = pg_config(url, Duration::from_secs(5))?;
    cfg.application_name("authplane-listener");
    let (client, mut connection) = tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        r = cfg.connect(NoTls) => r?,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection future must be polled for anything to happen, notifications included.
    let driver = async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = tx.send(n.payload().to_owned());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return anyhow::Error::from(e),
                None => return anyhow::anyhow!("connection closed"),
            }
        }
    };
    tokio::pin!(driver);
    let listen = format!("LISTEN {CHANNEL}");
    tokio::select! {
        r = client.batch_execute(&listen) => r?,
        e = &mut driver => return Err(e),
    }
    // Anything changed while we were not listening is dropped now; from here on, notifications
    // cover every change. Flush first, then report connected.
    flush();
    connected.send_replace(true);
    tracing::info!("listening for cross-node invalidations");
    // A liveness probe, so that a silently dead connection is noticed within seconds.
    let mut probe = tokio::time::interval(Duration::from_secs(5));
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            e = &mut driver => return Err(e),
            Some(payload) = rx.recv() => match Invalidation::decode(&payload) {
                Some(inv) => apply(inv).await,
                None => tracing::warn!("ignoring a malformed invalidation"),
            },
            _ = probe.tick() => {
                let ping = tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"));
                tokio::select! {
                    r = ping => { r.map_err(|_| anyhow::anyhow!("liveness probe timed out"))??; }
                    e = &mut driver => return Err(e),
                }
            }
        }
    }
}
