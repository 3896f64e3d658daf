//! argon2id verification off the async workers. Each check costs tens of milliseconds of CPU, so
//! it runs on tokio's blocking pool behind a semaphore: a burst of logins can neither starve the
//! request workers nor grow the blocking pool without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;

use crate::crypto::PasswordHashString;
use crate::error::ApiError;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// Verifications performed, so tests can check what costs an argon2 run.
    verifications: Arc<AtomicU64>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Verifies `secret` against `hash` in constant time (inside argon2).
    pub async fn verify(&self, hash: Arc<PasswordHashString>, secret: String) -> Result<bool, ApiError> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || hash.verify(&secret))
            .await
            .map_err(ApiError::internal)
    }

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}
