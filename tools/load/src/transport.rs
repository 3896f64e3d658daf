//! The measured requests' HTTP/1.1 client: hyper's connection API over a pool of kept-alive
//! connections to the one server, and nothing else per request.
//!
//! reqwest (which the set-up still uses) parses the URL (with IDNA), checks a connection out of
//! a keyed pool and copies the answer's headers for every request; on these 2-core
//! machines that made the tool, not the server, the bound of every fast run: 24–40 µs of its
//! own CPU per answer of the bare hello, whose server then idled a third of the time and paid
//! more per answer than a busy one (BENCHMARKS.md section 2, "the hello the way"). Here
//! a request is a path, its headers and a body; a connection is taken from a stack of idle ones
//! and put back when its answer has been read whole.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::stats::TransportError;

/// An answer read whole.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Transport {
    addr: SocketAddr,
    host: HeaderValue,
    /// The base URL's path (empty for a server at the root), put before every request's.
    prefix: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// The connections' drivers: each ends when its connection closes, and all are stopped when
    /// the transport is dropped.
    drivers: Mutex<JoinSet<()>>,
    timeout: Duration,
}

impl Transport {
    /// A client of the server at `base` (an `http://` URL, checked to be a loopback one by the
    /// caller); `timeout` bounds each request, connecting included.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url = url::Url::parse(base)?;
        let addr = url
            .socket_addrs(|| None)?
            .into_iter()
            .next()
            .with_context(|| format!("{base}: no address"))?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&host)?,
            prefix: url.path().trim_end_matches('/').to_owned(),
            idle: Mutex::new(Vec::new()),
            drivers: Mutex::new(JoinSet::new()),
            timeout,
        })
    }

    /// `GET path` (with its query) with `headers`.
    pub async fn get(&self, path: &str, headers: &[(HeaderName, &str)]) -> Result<Reply, TransportError> {
        self.send(Method::GET, path, headers, None).await
    }

    /// `POST path` with a form body (`application/x-www-form-urlencoded`) and `headers`.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(HeaderName, &str)],
    ) -> Result<Reply, TransportError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(Method::POST, path, headers, Some(Bytes::from(body))).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        form: Option<Bytes>,
    ) -> Result<Reply, TransportError> {
        let is_form = form.is_some();
        let mut req = Request::new(Full::new(form.unwrap_or_default()));
        *req.method_mut() = method;
        let uri = if self.prefix.is_empty() {
            path.parse()
        } else {
            format!("{}{path}", self.prefix).parse()
        };
        *req.uri_mut() = uri.map_err(|_| TransportError::Other)?;
        let h = req.headers_mut();
        h.insert(header::HOST, self.host.clone());
        if is_form {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        for (name, value) in headers {
            h.append(name, HeaderValue::from_str(value).map_err(|_| TransportError::Other)?);
        }
        match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(res) => res,
            Err(_) => Err(TransportError::Timeout),
        }
    }

    async fn exchange(&self, mut req: Request<Full<Bytes>>) -> Result<Reply, TransportError> {
        let (conn, res) = loop {
            let (mut conn, pooled) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            let sent = match conn.ready().await {
                Ok(()) => conn.try_send_request(req).await,
                // Closed since it was put back (the server's idle deadline): the next one.
                Err(_) if pooled => continue,
                Err(_) => return Err(TransportError::Other),
            };
            match sent {
                Ok(res) => break (conn, res),
                // A kept-alive connection closed before the request was written: sent on
                // another, as a client's pool would (the request never reached the server).
                Err(mut e) => match e.take_message() {
                    Some(back) if pooled => req = back,
                    _ => return Err(TransportError::Other),
                },
            }
        };
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|_| TransportError::Other)?.to_bytes();
        if !conn.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// An idle connection that is still open (the server may have closed some).
    fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// A new connection; its driver runs as a task of its own until the connection closes.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|_| TransportError::Connect)?;
        stream.set_nodelay(true).map_err(|_| TransportError::Connect)?;
        let (conn, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::Connect)?;
        let mut drivers = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
        // Reap the drivers of connections that have closed, so the set holds the live ones.
        while drivers.try_join_next().is_some() {}
        drivers.spawn(async move {
            // A closed or broken connection ends here; its requests see the error themselves.
            let _ = driver.await;
        });
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Takes the next connection, reads one request's headers (the tests' requests have no
    /// body) and answers 200 with `body`, keeping the connection open; hands it back.
    async fn answer(listener: &TcpListener, body: &str) -> TcpStream {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = socket.read(&mut buf).await.unwrap();
            assert!(read > 0, "the request ended before its headers");
            seen.extend_from_slice(&buf[..read]);
        }
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        socket.write_all(answer.as_bytes()).await.unwrap();
        socket
    }

    /// A server that answers one request per connection and then drops it, without saying so
    /// (no `Connection: close`): every kept-alive connection the transport holds is dead by its
    /// next request, the way one is after the server's idle deadline.
    async fn one_answer_per_connection() -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for n in 1..=3 {
                answer(&listener, &n.to_string()).await;
            }
            3
        });
        (addr, server)
    }

    #[tokio::test]
    async fn a_kept_alive_connection_the_server_dropped_is_replaced_not_an_error() {
        let (addr, server) = one_answer_per_connection().await;
        let transport = Transport::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        for n in 1..=3 {
            let reply = transport
                .get("/", &[])
                .await
                .unwrap_or_else(|e| panic!("request {n}: {e:?}"));
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, n.to_string(), "request {n} on connection {n}");
        }
        assert_eq!(server.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_request_on_a_pooled_connection_closed_meanwhile_goes_on_a_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let (dropped, was_dropped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // A kept-alive answer, then the connection dropped when the test says so: after the
            // transport has put it back in its pool, before its driver has seen the end.
            let first = answer(&listener, "1").await;
            closed.await.unwrap();
            drop(first);
            dropped.send(()).unwrap();
            answer(&listener, "2").await;
        });
        let transport = Transport::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        assert_eq!(transport.get("/", &[]).await.unwrap().body, "1");
        assert_eq!(transport.idle.lock().unwrap().len(), 1, "kept alive");
        close.send(()).unwrap();
        was_dropped.await.unwrap();
        let reply = transport.get("/", &[]).await.expect("sent again on a new connection");
        assert_eq!(reply.body, "2");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_carries_the_host_the_form_and_the_headers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0; 1024];
            while !String::from_utf8_lossy(&seen).ends_with("a=1&b=x+y%26") {
                let read = socket.read(&mut buf).await.unwrap();
                assert!(read > 0, "the request ended early: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..read]);
            }
            socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            String::from_utf8(seen).unwrap().to_ascii_lowercase()
        });
        let transport = Transport::new(&format!("http://{addr}/base/"), Duration::from_secs(5)).unwrap();
        let reply = transport
            .post_form(
                "/p",
                &[("a", "1"), ("b", "x y&")],
                &[(header::AUTHORIZATION, "Basic abc")],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 204);
        let request = server.await.unwrap();
        assert!(request.starts_with("post /base/p http/1.1\r\n"), "{request}");
        for line in [
            format!("host: {addr}\r\n"),
            "content-type: application/x-www-form-urlencoded\r\n".to_owned(),
            "authorization: basic abc\r\n".to_owned(),
            "content-length: 12\r\n".to_owned(),
        ] {
            assert!(request.contains(&line), "{line:?} in {request}");
        }
    }
}
