//! PostgreSQL for tests: a fresh schema per test in the database of
//! `AUTHPLANE_TEST_DATABASE_URL` (scripts/ensure-postgres provides one; the default is the local
//! server these machines run), dropped when the test ends.

use std::sync::Arc;
use std::time::Duration;

use authplane::config::{Config, StoreKind};
use authplane::store::postgres::PostgresStore;
use authplane::telemetry::Metrics;

use crate::helpers::*;

pub fn base_url() -> String {
    std::env::var("AUTHPLANE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct TestDb {
    pub url: String,
    schema: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} (run scripts/ensure-postgres): {e}", base_url()));
        let driver = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        drop(client);
        let _ = driver.await;
        let sep = if base_url().contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-c%20search_path%3D{schema}", base_url());
        Self { url, schema }
    }

    pub async fn store(&self) -> Arc<PostgresStore> {
        Arc::new(
            PostgresStore::connect(&self.url, 8, Duration::from_secs(2), &Metrics::new())
                .await
                .unwrap(),
        )
    }

    /// A config for an app on this database.
    pub fn config(&self, tweak: impl FnOnce(&mut authplane::config::Settings)) -> Config {
        let url = self.url.clone();
        test_config(move |s| {
            s.store = Some(StoreKind::Postgres);
            s.database_url = Some(url);
            s.key_encryption_key = Some(authplane_testkit::fixture::KEY_ENCRYPTION_KEY.parse().unwrap());
            tweak(s);
        })
    }

    /// An app on this database (its own pool, its own caches, its invalidation listener).
    pub async fn spawn(&self, tweak: impl FnOnce(&mut authplane::config::Settings)) -> TestApp {
        spawn_with(self.config(tweak), None).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop needs its own runtime: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
