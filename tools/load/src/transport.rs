//! The measured requests' HTTP/1.1 client: hyper's connection API over a pool of kept-alive
//! connections to the one server, and nothing else per request.
//!
//! reqwest (which the set-up still uses) parses the URL (with IDNA), checks a connection out of
//! a keyed pool, copies the answer's headers and arms a timer for every request; on these 2-core
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

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<Reply, TransportError> {
        let mut conn = match self.checkout() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        conn.ready().await.map_err(|_| TransportError::Other)?;
        let res = conn.send_request(req).await.map_err(|_| TransportError::Other)?;
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
