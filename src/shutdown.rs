//! One shutdown design: SIGTERM, SIGINT or SIGQUIT cancels the root token; the server stops
//! accepting and lets in-flight requests finish; every background task runs on the `TaskTracker`
//! and is waited for, at most `--shutdown-grace` (see `app::Application::run`).
//!
//! SIGHUP and SIGUSR1 are logged and ignored: their default action would kill the process without
//! draining. The config file is read at start-up only; a restart (SIGTERM, which drains) applies
//! a changed one.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signal handlers, installed when this is created: before the server announces its address,
/// so that a signal sent right after that announcement is never the default (fatal) one.
pub struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Resolves on the first SIGTERM, SIGINT or SIGQUIT; logs the others and keeps waiting.
    pub async fn recv(&mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return tracing::info!("SIGTERM received; shutting down"),
                _ = self.int.recv() => return tracing::info!("SIGINT received; shutting down"),
                _ = self.quit.recv() => return tracing::info!("SIGQUIT received; shutting down"),
                _ = self.hup.recv() => tracing::info!(
                    "SIGHUP received; ignored (the config file is read at start-up: restart to apply changes)"
                ),
                _ = self.usr1.recv() => tracing::info!("SIGUSR1 received; ignored"),
            }
        }
    }
}
