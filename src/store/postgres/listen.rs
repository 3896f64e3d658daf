//! Cross-node invalidation: the LISTEN loop behind [`PostgresStore`]'s invalidation feed.
//!
//! [`PostgresStore`]: super::PostgresStore

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::sql;
use crate::store::{Invalidation, InvalidationSink};

/// How long connecting, and each liveness probe, may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the connection is probed, so that a silently dead one is noticed within seconds.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Receives invalidations on a dedicated connection (pooled connections do not deliver
/// notifications) and hands each to `sink`. When the connection is lost it is re-established
/// with backoff, until `cancel` fires; once `LISTEN` is in place again, `sink` is emptied, since
/// notifications may have been missed meanwhile, and only then is `connected` set.
///
/// Between the loss and the flush, cached entries keep being served: while the database is down
/// no node can commit a revocation, and what committed just before the loss stays cached at most
/// `--cache-ttl`, the contract's bound.
pub async fn listen(
    cfg: tokio_postgres::Config,
    sink: Arc<dyn InvalidationSink>,
    connected: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let res = listen_once(&cfg, &*sink, &connected, &cancel).await;
        connected.send_replace(false);
        match res {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "invalidation listener lost its connection"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Returns `Ok` when cancelled, `Err` when the connection failed.
async fn listen_once(
    cfg: &tokio_postgres::Config,
    sink: &dyn InvalidationSink,
    connected: &watch::Sender<bool>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
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
    tokio::select! {
        r = client.batch_execute(sql::LISTEN) => r?,
        e = &mut driver => return Err(e),
    }
    // Anything changed while we were not listening is dropped now; from here on, notifications
    // cover every change. Flush first, then report connected.
    sink.invalidate_all();
    connected.send_replace(true);
    tracing::info!("listening for cross-node invalidations");
    let mut probe = tokio::time::interval(PROBE_EVERY);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            e = &mut driver => return Err(e),
            Some(payload) = rx.recv() => match Invalidation::decode(&payload) {
                Some(inv) => sink.invalidate(inv).await,
                None => tracing::warn!("ignoring a malformed invalidation"),
            },
            _ = probe.tick() => {
                let ping = tokio::time::timeout(TIMEOUT, client.simple_query(sql::PING));
                tokio::select! {
                    r = ping => { r.map_err(|_| anyhow::anyhow!("liveness probe timed out"))??; }
                    e = &mut driver => return Err(e),
                }
            }
        }
    }
}
