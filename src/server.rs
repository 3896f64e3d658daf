//! The accept loop, in place of `axum::serve`, for what a hostile client must not be able to make
//! the server hold (invariant 12 of docs/reference.md):
//!
//! - **Connections** are capped at `--max-connections`: at the cap the loop stops accepting (new
//!   connections wait in the kernel's backlog) and keeps serving the ones it has.
//! - **Header, idle and body deadlines**, per connection: a client gets `--header-timeout` from
//!   its first byte to the end of a request's headers, a keep-alive connection `--idle-timeout`
//!   between the end of one answer and the first byte of the next request (a fresh connection
//!   that sends nothing gets the header timeout), and a request's body `--body-timeout` in all
//!   ([`BodyDeadline`]). Past a connection deadline the connection is closed.
//! - **Header bytes** are capped at `--max-header-bytes` (hyper answers 431 with an empty body).
//! - **Shutdown** closes idle connections and connections still sending headers at once, and
//!   stops reading unfinished bodies, so a stalled client never stretches a shutdown to its grace.
//!
//! hyper's own `header_read_timeout` is not used: it starts when hyper begins waiting for a
//! request, idle time included, so it would close keep-alive connections after the header
//! timeout instead of the idle timeout. [`Deadlines`] watches the bytes instead.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Version, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::http::HttpService;

/// The limits of [`serve`], from the config.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

/// Serves `router` on `listener` until `cancel` fires; then stops accepting, closes the
/// connections that have no request in progress, and returns once every connection has ended.
/// (The caller bounds that wait with the shutdown grace.)
pub async fn serve(listener: TcpListener, router: HttpService, limits: ConnLimits, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024) + 8 * 1024)
        // An answer's head and body copied into one buffer and sent with one `send`, not
        // `writev`: the vectored write goes through the file layer (the file position's lock,
        // the iovec's import) and costs the kernel more than the copy of a few hundred bytes
        // costs here (BENCHMARKS.md section 2, "one send per answer"). The largest answers (an
        // admin listing's page of at most 1,000 entries) are copied once too.
        .writev(false);
    loop {
        // At the cap, wait for a connection to end before accepting another: the ones we have
        // keep being served, and new ones wait in the backlog.
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection errors (the peer reset before we accepted) and descriptor
                    // exhaustion: log, pause briefly so a full table can drain, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let cancel = cancel.clone();
        let http = http.clone();
        connections.spawn(async move {
            serve_connection(http, stream, peer, router, limits, cancel).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    http: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: HttpService,
    limits: ConnLimits,
    cancel: CancellationToken,
) {
    let io = Deadlines::new(stream, limits.header_timeout, limits.idle_timeout);
    let phase = Arc::clone(&io.phase);
    let body_cancel = Arc::new(cancel.clone());
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let req = req.map(|body| Body::new(BodyDeadline::new(body, limits.body_timeout, Arc::clone(&body_cancel))));
        let router = router.clone();
        async move {
            if !one_host(&req) {
                let refused = ApiError::InvalidRequest("a request needs exactly one Host header").into_response();
                return Ok(refused);
            }
            router.oneshot(req).await
        }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // `biased`: the connection first, and no random draw on each of its wake-ups.
    tokio::select! {
        biased;
        res = conn.as_mut() => return log_end(res),
        () = cancel.cancelled() => {}
    }
    // Shutting down: no new request on this connection. One with no request in progress
    // (idle, or still sending headers) is closed now; otherwise its answer is awaited (an
    // unfinished body fails at once: see [`BodyDeadline`]).
    if phase.load(Ordering::Acquire) != IN_REQUEST {
        return;
    }
    conn.as_mut().graceful_shutdown();
    log_end(conn.await);
}

/// RFC 9112 section 3.2: an HTTP/1.1 request without a Host header, or any request with more
/// than one, is answered 400.
fn one_host<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), None) => true,
        (None, _) => req.version() < Version::HTTP_11,
        (Some(_), Some(_)) => false,
    }
}

fn log_end(res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        // Timeouts, resets and malformed requests: the client's doing, not an error of ours.
        tracing::debug!(error = %e, "connection ended");
    }
}

// === impl Deadlines ===

/// Waiting for a request (fresh connection: the header deadline; after an answer: the idle one).
const WAITING: u8 = 0;
/// Between a request's first byte and the end of its headers.
const IN_HEADERS: u8 = 1;
/// Headers complete, until the answer has been written: no connection deadline (the body has
/// its own, the handler `--request-timeout`).
const IN_REQUEST: u8 = 2;

/// A connection's socket that closes it (a read error) when the client is too slow between
/// requests or inside a request's headers. It follows the bytes: the first byte read starts the
/// header deadline, the end of the headers (`\r\n\r\n`) clears it, and a write (the answer)
/// starts the idle deadline.
///
/// One timer per connection, re-armed lazily: a deadline later than the timer leaves it alone
/// (when it fires early, it is set again), so a busy keep-alive connection touches the timer
/// about once per header timeout, not twice per request.
pub struct Deadlines<IO> {
    io: IO,
    phase: Arc<AtomicU8>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// When the current phase's deadline passes; `None` while a request is served.
    due: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    /// What `timer` is set to.
    timer_at: Instant,
    /// Whether `timer` was polled since it was last set, so that it will wake this task (a
    /// timer that fired holds no waker any more).
    timer_armed: bool,
    /// The last bytes of the headers read so far, to find `\r\n\r\n` across reads.
    tail: u32,
}

impl<IO> Deadlines<IO> {
    pub fn new(io: IO, header_timeout: Duration, idle_timeout: Duration) -> Self {
        let due = Instant::now() + header_timeout;
        Self {
            io,
            phase: Arc::new(AtomicU8::new(WAITING)),
            header_timeout,
            idle_timeout,
            due: Some(due),
            timer: Box::pin(tokio::time::sleep_until(due)),
            timer_at: due,
            timer_armed: false,
            tail: 0,
        }
    }

    /// Sets the deadline; moves the timer only when it would fire too late (or has fired).
    fn set_due(&mut self, due: Instant) {
        self.due = Some(due);
        if self.timer_at > due || self.timer.is_elapsed() {
            self.reset_timer(due);
        }
    }

    fn reset_timer(&mut self, at: Instant) {
        self.timer.as_mut().reset(at);
        self.timer_at = at;
        self.timer_armed = false;
    }

    /// Polls the timer (registering this task's waker); `true` when it has fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let fired = self.timer.as_mut().poll(cx).is_ready();
        self.timer_armed = !fired;
        fired
    }

    /// Follows the request bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut phase = self.phase.load(Ordering::Relaxed);
        let first = phase == WAITING;
        if first {
            phase = IN_HEADERS;
            self.tail = 0;
        }
        if phase == IN_HEADERS {
            // Body bytes after the headers (or a pipelined request) need no bookkeeping here.
            if ends_headers(self.tail, bytes) {
                phase = IN_REQUEST;
                self.due = None;
            } else {
                if first {
                    // The header deadline runs from the request's first bytes; headers that
                    // came whole in one read (nearly all) never need it, nor a clock read.
                    self.set_due(Instant::now() + self.header_timeout);
                }
                self.tail = bytes.iter().fold(self.tail, |t, b| (t << 8) | u32::from(*b));
            }
        }
        self.phase.store(phase, Ordering::Release);
    }

    /// A write: the answer. Starts the idle deadline; the timer is registered with this task
    /// here, as the task may wait on the socket without polling it again.
    fn answered(&mut self, cx: &mut Context<'_>) {
        let was_waiting = self.phase.swap(WAITING, Ordering::AcqRel) == WAITING;
        if !was_waiting || self.due.is_none() {
            self.set_due(Instant::now() + self.idle_timeout);
            if !self.timer_armed {
                // If it has fired already, the next read sees the deadline.
                let _ = self.poll_timer(cx);
            }
        }
    }
}

/// Whether `\r\n\r\n` ends in `bytes`, read after the bytes whose last four are `tail`. A
/// request without a body ends with its headers (nearly every GET): that is one comparison.
/// Otherwise across the boundary (three bytes each side), then within `bytes` by `memmem` (SIMD:
/// a byte loop was 1.5% of an authorize request, whose headers carry a long query), with a
/// searcher built once: `memmem::find` builds one per call, which cost more than the search.
fn ends_headers(tail: u32, bytes: &[u8]) -> bool {
    const END: &[u8; 4] = b"\r\n\r\n";
    static FINDER: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(END));
    if bytes.ends_with(END) {
        return true;
    }
    let mut seam = [0u8; 6];
    seam[..3].copy_from_slice(&tail.to_be_bytes()[1..]);
    let n = bytes.len().min(3);
    seam[3..3 + n].copy_from_slice(&bytes[..n]);
    seam[..3 + n].windows(END.len()).any(|w| w == END) || FINDER.find(bytes).is_some()
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlines<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                let Some(due) = this.due else {
                    return Poll::Pending;
                };
                if !this.poll_timer(cx) {
                    return Poll::Pending;
                }
                if Instant::now() < due {
                    // Fired for an earlier deadline: set it for this one, and wait again.
                    this.reset_timer(due);
                    continue;
                }
                let what = match this.phase.load(Ordering::Relaxed) {
                    IN_HEADERS => "headers not received within --header-timeout",
                    _ => "connection idle past its deadline",
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlines<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.answered(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.answered(cx);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// === impl BodyDeadline ===

/// The request body did not arrive within `--body-timeout`, or the server is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimedOut;

/// The deadline and the shutdown signal a body waits against.
type Waiting = (Pin<Box<Sleep>>, Pin<Box<WaitForCancellationFutureOwned>>);

/// A request body that fails with [`BodyTimedOut`] when it has not fully arrived within its
/// deadline, or when shutdown begins while it is awaited. The deadline counts from the first
/// poll that has to wait. hyper hands a body over only once it is asked for it, so that is the
/// first poll of nearly every body, even one already in the connection's buffer: the timer and
/// the shutdown waiter are made for every request with a body. (Waking the task once instead,
/// and arming them on a second wait, took 0.55% of an introspection's instructions: kept out,
/// too little for its extra state; BENCHMARKS.md section 2, "the hot routes in front of the
/// router".)
pub struct BodyDeadline {
    inner: Incoming,
    timeout: Duration,
    waiting: Option<Waiting>,
    /// The connection's shutdown signal, shared (cloning a token takes its lock).
    cancel: Arc<CancellationToken>,
}

impl BodyDeadline {
    pub fn new(inner: Incoming, timeout: Duration, cancel: Arc<CancellationToken>) -> Self {
        Self {
            inner,
            timeout,
            waiting: None,
            cancel,
        }
    }
}

impl hyper::body::Body for BodyDeadline {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let (sleep, cancelled) = this.waiting.get_or_insert_with(|| {
            (
                Box::pin(tokio::time::sleep(this.timeout)),
                Box::pin(CancellationToken::clone(&this.cancel).cancelled_owned()),
            )
        });
        if sleep.as_mut().poll(cx).is_ready() || cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn deadlines() -> Deadlines<tokio::io::Empty> {
        Deadlines::new(tokio::io::empty(), Duration::from_secs(10), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn the_phase_follows_the_bytes() {
        let mut d = deadlines();
        assert_eq!(d.phase.load(Ordering::Relaxed), WAITING);
        d.saw(b"POST /auth/token HTTP/1.1\r\nhost: x\r");
        assert_eq!(d.phase.load(Ordering::Relaxed), IN_HEADERS);
        assert!(d.due.is_some());
        // The end of the headers may arrive split across reads.
        d.saw(b"\n\r");
        assert_eq!(d.phase.load(Ordering::Relaxed), IN_HEADERS);
        d.saw(b"\ngrant_type=client_credentials");
        assert_eq!(d.phase.load(Ordering::Relaxed), IN_REQUEST);
        assert!(d.due.is_none(), "no connection deadline while a request is served");
        d.answered(&mut Context::from_waker(std::task::Waker::noop()));
        assert_eq!(d.phase.load(Ordering::Relaxed), WAITING);
        assert!(d.due.is_some(), "the idle deadline runs after the answer");
        // Headers whole in one read (no header deadline on the way): served at once.
        d.saw(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
        assert_eq!(d.phase.load(Ordering::Relaxed), IN_REQUEST);
        assert!(d.due.is_none());
    }

    #[tokio::test]
    async fn the_end_of_the_headers_is_found_however_it_is_split() {
        let request = b"GET /auth/authorize?client_id=demo-app HTTP/1.1\r\nhost: x\r\n\r\nbody\r\n\r\n";
        let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        for first in 0..=request.len() {
            for second in first..=request.len() {
                let mut d = deadlines();
                let mut ended_at = None;
                for (cut, part) in [
                    (first, &request[..first]),
                    (second, &request[first..second]),
                    (request.len(), &request[second..]),
                ] {
                    d.saw(part);
                    if ended_at.is_none() && d.phase.load(Ordering::Relaxed) == IN_REQUEST {
                        ended_at = Some(cut);
                    }
                }
                // In the first read that holds the terminator's last byte, not before, not after.
                let expected = [first, second, request.len()].into_iter().find(|&cut| cut >= end);
                assert_eq!(ended_at, expected, "reads split at {first} and {second}");
            }
        }
        let mut d = deadlines();
        d.saw(b"GET / HTTP/1.1\r\nx: \r\n\n\r\n");
        assert_eq!(d.phase.load(Ordering::Relaxed), IN_HEADERS, "no \\r\\n\\r\\n yet");
    }
}
