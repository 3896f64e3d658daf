//! argon2id verification off the async workers. Each check costs tens of milliseconds of CPU and
//! ~19 MiB of memory, so it runs on a small set of dedicated threads (`--hash-concurrency` of
//! them), each reusing one argon2 buffer: a burst of logins can neither starve the request workers
//! nor make the allocator hold a 19 MiB block per blocking-pool thread. Jobs wait in a bounded
//! queue; when it is full the request is answered 503 at once.
//!
//! The threads end when the last handle to the hasher is dropped (the channel closes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::crypto::PasswordHashString;
use crate::error::ApiError;

/// Verifications that may wait for a hashing thread.
const QUEUE: usize = 1024;

type Job = Box<dyn FnOnce(&mut Vec<argon2::Block>) + Send>;

#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    /// Verifications performed, so tests can check what costs an argon2 run.
    verifications: Arc<AtomicU64>,
}

impl Hasher {
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&queue));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        Self {
            jobs,
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Verifies `secret` against `hash` in constant time (inside argon2).
    pub async fn verify(&self, hash: Arc<PasswordHashString>, secret: String) -> Result<bool, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(hash.verify_with(&secret, memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal(anyhow::anyhow!("hashing threads gone")));
            }
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        rx.await.map_err(ApiError::internal)
    }

    /// Hashes a new password or client secret (argon2id, `params`) on the hashing threads.
    pub async fn hash(&self, secret: String, params: crate::crypto::Argon2Params) -> Result<String, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |_| {
            let _ = tx.send(crate::crypto::hash_password(&secret, params));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal(anyhow::anyhow!("hashing threads gone")));
            }
        }
        rx.await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing failed: {e}")))
    }

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

/// One hashing thread: takes jobs until the channel closes, reusing one argon2 buffer.
fn work(queue: &Mutex<Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(&mut memory),
            Err(_) => return,
        }
    }
}
