//! One shutdown design: SIGTERM or SIGINT cancels the root token; the server stops accepting and
//! lets in-flight requests finish; every background task runs on the `TaskTracker` and is waited
//! for, at most `--shutdown-grace` (see `app::Application::run`).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT handlers, installed when this is created: before the server announces its
/// address, so that a signal sent right after that announcement is never the default (fatal) one.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = self.int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    }
}
