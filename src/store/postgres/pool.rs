//! Connections: the settings authplane wants, the pool, how driver errors map onto
//! [`StoreError`], and the embedded migrations applied at start-up.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::sql;
use crate::store::StoreError;

/// Embedded migrations, applied in order; a version is never edited once released.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../../migrations/0001_initial.sql")),
    (2, include_str!("../../../migrations/0002_refresh_families.sql")),
    (3, include_str!("../../../migrations/0003_openid_connect.sql")),
    (4, include_str!("../../../migrations/0004_consents.sql")),
    (5, include_str!("../../../migrations/0005_users_clients.sql")),
    (6, include_str!("../../../migrations/0006_resources.sql")),
    (7, include_str!("../../../migrations/0007_dpop.sql")),
    (8, include_str!("../../../migrations/0008_pushed_requests.sql")),
    (9, include_str!("../../../migrations/0009_used_jtis.sql")),
];

/// Key of the advisory lock that serialises migrations across nodes ("authplan").
const MIGRATION_LOCK: i64 = 0x6175_7468_706c_616e;

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

/// At most `size` connections; a caller waits at most `timeout` for one, and creating or
/// recycling one is bounded by it too.
pub fn build(cfg: tokio_postgres::Config, size: usize, timeout: Duration) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// Classifies a driver error: a lost or refused connection is `Unavailable` (503, retry), a
/// statement the database rejected is `Internal` (500).
pub fn db_err(e: tokio_postgres::Error) -> StoreError {
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

pub fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_err(e),
        PoolError::Timeout(_) | PoolError::Closed => StoreError::Unavailable(e.into()),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => StoreError::Internal(e.into()),
    }
}

/// Applies the embedded migrations not applied yet, holding an advisory lock so that nodes
/// starting together do it once.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    conn.execute(sql::LOCK_MIGRATIONS, &[&MIGRATION_LOCK]).await?;
    let res = async {
        conn.batch_execute(sql::CREATE_MIGRATIONS_TABLE).await?;
        for (version, migration) in MIGRATIONS {
            if conn.query_opt(sql::MIGRATION_APPLIED, &[version]).await?.is_some() {
                continue;
            }
            let tx = conn.transaction().await?;
            tx.batch_execute(migration).await?;
            tx.execute(sql::RECORD_MIGRATION, &[version]).await?;
            tx.commit().await?;
            tracing::info!(version, "applied migration");
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    conn.execute(sql::UNLOCK_MIGRATIONS, &[&MIGRATION_LOCK]).await?;
    res
}
