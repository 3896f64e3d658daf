//! The PostgreSQL store, for several nodes sharing one database.
//!
//! - Pooled access (deadpool-postgres): at most `--pool-size` connections, a caller waits at most
//!   `--pool-timeout` for one, and the wait is measured (`authplane_store_pool_wait_seconds`, and
//!   `pool_wait_ms` on the store span). Statements are prepared once per connection.
//! - Atomicity across nodes: consuming a code and rotating a refresh token are single
//!   conditional `UPDATE … RETURNING` statements, so of N concurrent callers on any nodes exactly
//!   one wins.
//! - Cross-node invalidation: every change another node may have cached (logout, revocation,
//!   rotation) sends `NOTIFY` on [`sql::CHANNEL`] in the same statement, so the notification goes
//!   out exactly when the change commits. The store's invalidation feed ([`listen`]) receives
//!   them on a dedicated connection.
//! - Migrations are embedded and applied at start-up under an advisory lock, so nodes starting
//!   together apply them once.
//! - The sweeper deletes in batches through the expiry indexes with `FOR UPDATE SKIP LOCKED`, so
//!   nodes sweeping at once never wait for each other.
//!
//! # Layout
//! - [`pool`]: connection settings, the pool, driver errors to [`StoreError`](super::StoreError), migrations.
//! - [`sql`]: every statement, and the NOTIFY channel they name.
//! - [`rows`]: rows to records, and records to statement parameters.
//! - `store`: the [`Store`](crate::store::Store) implementation.
//! - [`listen`]: the LISTEN loop of cross-node invalidation.

use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use metrics::Histogram;
use tokio_postgres::Row;

use self::pool::{db_err, pool_err};
use self::rows::Param;
use super::StoreResult;
use crate::telemetry::{self, Metrics};

mod listen;
mod pool;
mod rows;
mod sql;
mod store;

/// Nodes tell each other about changes on this channel (a deployment's other tooling may listen).
pub use self::sql::CHANNEL;

/// How long the invalidation listener may take to connect.
const LISTENER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: Pool,
    pool_wait: Histogram,
    /// The settings of the invalidation listener's own connection: pooled connections do not
    /// deliver notifications.
    listener: tokio_postgres::Config,
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
        let pool = pool::build(pool::pg_config(url, pool_timeout)?, pool_size, pool_timeout)?;
        let mut listener = pool::pg_config(url, LISTENER_CONNECT_TIMEOUT)?;
        listener.application_name("authplane-listener");
        pool::migrate(&pool).await?;
        Ok(Self {
            pool,
            pool_wait: metrics.histogram(telemetry::POOL_WAIT, &[]),
            listener,
        })
    }

    /// A pooled connection; the wait is measured and put on the current (store) span.
    async fn conn(&self) -> StoreResult<Object> {
        let start = Instant::now();
        let conn = self.pool.get().await;
        let waited = start.elapsed();
        self.pool_wait.record(waited.as_secs_f64());
        crate::layers::admission::queue_delay::record(waited);
        tracing::Span::current().record("pool_wait_ms", waited.as_secs_f64() * 1000.0);
        conn.map_err(pool_err)
    }

    async fn query_opt(&self, sql: &str, params: &[Param<'_>]) -> StoreResult<Option<Row>> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql).await.map_err(db_err)?;
        conn.query_opt(&stmt, params).await.map_err(db_err)
    }

    /// One row by key, mapped; `None` when there is none.
    async fn get_one<T>(&self, sql: &str, key: &[u8], map: fn(&Row) -> StoreResult<T>) -> StoreResult<Option<T>> {
        self.query_opt(sql, &[&key]).await?.as_ref().map(map).transpose()
    }

    /// A keyset page: up to `limit` rows after the key `after`.
    async fn list<T>(
        &self,
        sql: &str,
        after: Option<&str>,
        limit: usize,
        map: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql).await.map_err(db_err)?;
        let rows = conn.query(&stmt, &[&after, &limit]).await.map_err(db_err)?;
        rows.iter().map(map).collect()
    }

    async fn execute(&self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(sql).await.map_err(db_err)?;
        conn.execute(&stmt, params).await.map_err(db_err)
    }
}
