//! The `request` span, made when the request first needs it.
//!
//! The edge ([`crate::layers::edge`]) runs every request in a `request` span carrying its id,
//! method and path. Made for every request, the span was the largest piece of the stack's own
//! work on a hot request (6% of an introspection's instructions: the registry's slot, the
//! fields' string, entering and leaving it on every poll, closing it), and on most requests
//! nothing is logged inside it: the span is seen only through what is logged in it.
//!
//! So with the plain log (levels by target, no OTLP export) the process's subscriber is
//! [`RequestSpans`], around the usual one. The edge keeps the request's fields
//! ([`RequestSpan`]) and, while it polls the request, makes them the thread's pending request;
//! the first event, span or `Span::current()` inside the request makes the span from them, with
//! the same callsite and fields the edge would have used, and enters it. From then on the
//! request runs in it as before, so every line logged inside a request still carries its id,
//! method and path, and spans made inside it are its children. A request that logs nothing
//! costs the fields' clones and two swaps of a thread-local per poll.
//!
//! With an OTLP exporter (every request is a trace) or `RUST_LOG` directives that name spans
//! (`EnvFilter` decides by the spans entered), the subscriber is not wrapped and the edge makes
//! the span at once, as it always did.
//!
//! One order differs from a span made at once: a span made outside the request (or with an
//! explicit parent) and entered inside it before anything there logs would have the request's
//! span entered above it when that is made. Nothing in the server does that: its spans (the
//! cache's, the store's) are made inside the request.

use std::cell::Cell;
use std::sync::Arc;

use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Method, Request};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Span, Subscriber};
use tracing_core::callsite::DefaultCallsite;
use tracing_core::field::{FieldSet, Value};
use tracing_core::metadata::Kind;
use tracing_log::NormalizeEvent;

use crate::layers::edge::REQUEST_SPAN;

/// The request span's one callsite, for both ways of making it: what `info_span!` would declare
/// at the edge (target [`REQUEST_SPAN`]'s, level info, `&str` fields).
static CALLSITE: DefaultCallsite = DefaultCallsite::new(&METADATA);

static METADATA: Metadata<'static> = Metadata::new(
    REQUEST_SPAN.1,
    REQUEST_SPAN.0,
    Level::INFO,
    Some(file!()),
    Some(line!()),
    Some(REQUEST_SPAN.0),
    FieldSet::new(
        &["request_id", "method", "path"],
        tracing_core::identify_callsite!(&CALLSITE),
    ),
    Kind::SPAN,
);

/// A root span with the request's fields through `dispatch`, or none where its filter disables
/// it (as the macro would decide, the callsite's interest asked by [`RequestSpan::new`]). A
/// root: nothing runs a span around the connections, and saying so spares the subscriber a
/// lookup of the current span.
fn make_span(dispatch: &Dispatch, id: &str, method: &str, path: &str) -> Span {
    if !dispatch.enabled(&METADATA) {
        return Span::none();
    }
    let fields = METADATA.fields();
    let mut names = fields.iter();
    let (Some(id_field), Some(method_field), Some(path_field)) = (names.next(), names.next(), names.next()) else {
        return Span::none();
    };
    let values: [(_, Option<&dyn Value>); 3] = [
        (&id_field, Some(&id)),
        (&method_field, Some(&method)),
        (&path_field, Some(&path)),
    ];
    Span::new_root_with(&METADATA, &fields.value_set(&values), dispatch)
}

/// The request id as the span's field: empty if there is none or it is not visible ASCII.
fn id_text(id: Option<&HeaderValue>) -> &str {
    id.and_then(|id| id.to_str().ok()).unwrap_or("")
}

/// The request's span as the edge keeps it: made, or still to be made from its fields.
pub struct RequestSpan {
    /// The span once made (none while pending, or if its filter disables it).
    span: Span,
    /// The fields while the span is still to be made (then `span` is none).
    pending: Option<RequestFields>,
}

/// What the span is made of, kept by value: the request has gone down the stack.
struct RequestFields {
    id: Option<HeaderValue>,
    method: Method,
    /// Not the whole `Uri` (88 bytes): these move in and out of a thread-local on every poll.
    path: Option<PathAndQuery>,
}

impl RequestFields {
    fn make_span(&self, dispatch: &Dispatch) -> Span {
        make_span(
            dispatch,
            id_text(self.id.as_ref()),
            self.method.as_str(),
            self.path.as_ref().map_or("", PathAndQuery::path),
        )
    }
}

/// The thread's request being polled, if any.
enum InRequest {
    Outside,
    /// Its span still to be made, from these.
    Pending(RequestFields),
    /// Its span, made during this poll and entered (none if its filter disables it).
    Made(Span),
}

thread_local! {
    static IN_REQUEST: Cell<InRequest> = const { Cell::new(InRequest::Outside) };
}

// === impl RequestSpan ===

impl RequestSpan {
    /// The span of a request with this id: made at once, unless the process's subscriber is
    /// [`RequestSpans`].
    pub fn new<B>(id: Option<&HeaderValue>, req: &Request<B>) -> Self {
        // Not inside `get_default`'s closure: the callsite's first registration may ask the
        // default dispatcher through `get_default` too, which answers "no subscriber" (and so
        // "never", cached) from inside another call.
        if CALLSITE.interest().is_never() {
            return Self {
                span: Span::none(),
                pending: None,
            };
        }
        tracing::dispatcher::get_default(|dispatch| {
            if dispatch.is::<RequestSpans>() {
                let pending = RequestFields {
                    id: id.cloned(),
                    method: req.method().clone(),
                    path: req.uri().path_and_query().cloned(),
                };
                return Self {
                    span: Span::none(),
                    pending: Some(pending),
                };
            }
            Self {
                span: make_span(dispatch, id_text(id), req.method().as_str(), req.uri().path()),
                pending: None,
            }
        })
    }

    /// Runs the request in its span until the guard drops (for one poll): enters the span, or
    /// makes the request the thread's pending one. Either way the thread's state is this
    /// request's for the poll (a request polled inside another's poll does not make the outer
    /// one's span for its own events).
    pub fn enter(&mut self) -> Entered<'_> {
        let this = match self.pending.take() {
            Some(fields) => InRequest::Pending(fields),
            None => {
                enter(&self.span);
                InRequest::Outside
            }
        };
        let outer = IN_REQUEST.replace(this);
        Entered { span: self, outer }
    }

    /// Whether the span is still to be made.
    #[cfg(test)]
    fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

fn enter(span: &Span) {
    span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
}

fn exit(span: &Span) {
    span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
}

/// The guard of [`RequestSpan::enter`]. Dropped (a panic's unwinding included), it leaves the
/// span, takes back the request's state from the thread (the fields, or the span made from them
/// meanwhile) and restores the thread's outer request, if one was being polled.
#[must_use = "the request runs in its span only while the guard lives"]
pub struct Entered<'a> {
    /// The request's span, given back its state when the guard drops.
    span: &'a mut RequestSpan,
    /// The thread's state before this poll.
    outer: InRequest,
}

// === impl Entered ===

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let outer = std::mem::replace(&mut self.outer, InRequest::Outside);
        match IN_REQUEST.replace(outer) {
            InRequest::Pending(fields) => self.span.pending = Some(fields),
            InRequest::Made(span) => {
                exit(&span);
                self.span.span = span;
            }
            // Made in an earlier poll (or none: its filter disables it).
            InRequest::Outside => exit(&self.span.span),
        }
    }
}

/// The process's subscriber when request spans are made on demand: every call goes to the
/// subscriber it wraps, and an event, a span or a `Span::current()` inside a request whose span
/// is still to be made makes it first.
///
/// Other types do not see through it (`Dispatch::downcast_ref` finds only `RequestSpans`):
/// [`crate::telemetry::init_tracing`] wraps only the plain log, whose parts need no downcast.
pub struct RequestSpans {
    /// The subscriber every call goes to.
    inner: Arc<dyn Subscriber + Send + Sync>,
    /// The same subscriber, for the spans made here (their entries and closes go straight to it).
    dispatch: Dispatch,
}

// === impl RequestSpans ===

impl RequestSpans {
    /// Around `subscriber`, which gets every call.
    pub fn new(subscriber: impl Subscriber + Send + Sync + 'static) -> Self {
        let inner: Arc<dyn Subscriber + Send + Sync> = Arc::new(subscriber);
        let dispatch = Dispatch::new(Arc::clone(&inner));
        Self { inner, dispatch }
    }

    /// Makes and enters the span of the request being polled on this thread, if it is pending;
    /// whether it did (then the filters were asked about the span).
    fn make_pending(&self) -> bool {
        IN_REQUEST
            .try_with(|state| match state.replace(InRequest::Outside) {
                InRequest::Pending(fields) => {
                    let span = fields.make_span(&self.dispatch);
                    enter(&span);
                    state.set(InRequest::Made(span));
                    true
                }
                other => {
                    state.set(other);
                    false
                }
            })
            .unwrap_or(false)
    }
}

impl Subscriber for RequestSpans {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        // Per-layer filters keep their answers about a span or event in a thread-local from
        // `enabled` until it is dispatched, and making the request's span asked them about
        // that one: ask again. (The span is enabled: `new_span` is called for enabled ones.)
        if attrs.is_contextual() && self.make_pending() {
            self.inner.enabled(attrs.metadata());
        }
        self.inner.new_span(attrs)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        // As in `new_span`: the filters are asked about the event again, with the metadata they
        // were asked with (a `log` record's own target, not tracing-log's "log").
        if event.is_contextual() && self.make_pending() {
            let normalized = event.normalized_metadata();
            let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
            if !(self.inner.enabled(metadata) && self.inner.event_enabled(event)) {
                return;
            }
        }
        self.inner.event(event);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        // Not between an `enabled` and its dispatch: no filter's answer is pending.
        self.make_pending();
        self.inner.current_span()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;
    use tracing_subscriber::filter::{LevelFilter as Filter, Targets};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    use super::*;
    use crate::layers::edge::{EdgeLayer, REQUEST_ID};
    use crate::layers::hot::HotLayer;
    use crate::telemetry::plain_fields::tests::{Buffer, text_log};

    /// Counts the request spans made.
    #[derive(Clone, Default)]
    struct Made(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Made {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            if attrs.metadata().callsite() == METADATA.callsite() {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    impl Made {
        fn count(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// The text log at `filter`, counting request spans; wrapped in [`RequestSpans`] if `lazy`.
    fn subscriber(lazy: bool, filter: &str) -> (Dispatch, Buffer, Made) {
        let (out, made) = (Buffer::default(), Made::default());
        let registry = tracing_subscriber::registry()
            .with(filter.parse::<Targets>().unwrap())
            .with(made.clone())
            .with(text_log(&out));
        let dispatch = if lazy {
            Dispatch::new(RequestSpans::new(registry))
        } else {
            Dispatch::new(registry)
        };
        (dispatch, out, made)
    }

    /// `/quiet` logs nothing; `/logs` logs across two polls, once in a debug span of its own and
    /// once at warn; `/panics` logs, then panics while polled; `/span-first` opens a span before
    /// it logs; `/current` answers the name of `Span::current()`; `/log-record` logs through
    /// the `log` crate's record, as tracing-log hands one on.
    fn routes() -> Router {
        Router::new()
            .route("/quiet", get(|| async { "quiet" }))
            .route(
                "/span-first",
                get(|| async {
                    tracing::info_span!("first").in_scope(|| tracing::info!("in it"));
                    "span"
                }),
            )
            .route(
                "/current",
                get(|| async { Span::current().metadata().map_or("none", |m| m.name()) }),
            )
            .route(
                "/log-record",
                get(|| async {
                    let record = tracing_log::log::Record::builder()
                        .target("tokio_postgres")
                        .level(tracing_log::log::Level::Debug)
                        .args(format_args!("from log"))
                        .build();
                    tracing_log::format_trace(&record).unwrap();
                    "log"
                }),
            )
            .route(
                "/logs",
                get(|| async {
                    tracing::info!("first");
                    tokio::task::yield_now().await;
                    tracing::debug_span!("child").in_scope(|| tracing::debug!("inside"));
                    tracing::warn!("second");
                    "logged"
                }),
            )
            .route(
                "/panics",
                get(|| async {
                    tracing::info!("before");
                    panic!("in poll");
                    #[allow(unreachable_code)]
                    ()
                }),
            )
    }

    /// `GET path` through the edge (request id `req-1`) under `dispatch`, on this thread: its
    /// status and body.
    async fn send(dispatch: &Dispatch, path: &str) -> (StatusCode, String) {
        let _default = tracing::dispatcher::set_default(dispatch);
        let router = crate::http::outer_layers(routes(), EdgeLayer::without_clients(), HotLayer::none());
        let req = Request::get(path)
            .header(&REQUEST_ID, "req-1")
            .body(Body::empty())
            .unwrap();
        let res: Result<_, Infallible> = router.oneshot(req).await;
        let res = res.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The log's lines, without the backtraces `anyhow` may add to an error (they name the
    /// test's own lines).
    fn lines(log: &Buffer) -> Vec<String> {
        let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
        let text = log.text();
        let lines = text
            .lines()
            .filter(|line| levels.iter().any(|l| line.trim_start().starts_with(l)));
        lines.map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn a_span_made_on_demand_logs_as_one_made_for_every_request() {
        let paths = ["/quiet", "/logs", "/panics", "/span-first", "/current", "/log-record"];
        for filter in ["debug", "info", "warn", "warn,tokio_postgres=debug"] {
            for path in paths {
                let (eager, eager_log, eager_made) = subscriber(false, filter);
                let (lazy, lazy_log, lazy_made) = subscriber(true, filter);
                let answer = send(&eager, path).await;
                assert_eq!(send(&lazy, path).await, answer, "{filter} {path}");
                assert_eq!(lines(&lazy_log), lines(&eager_log), "{filter} {path}");
                let enabled = filter == "debug" || filter == "info";
                assert_eq!(eager_made.count(), usize::from(enabled), "{filter} {path}");
                // Made only when something inside the request needs it, once (at info the
                // record at debug is not logged).
                let needs = match path {
                    "/quiet" => false,
                    "/log-record" => filter == "debug",
                    _ => true,
                };
                assert_eq!(lazy_made.count(), usize::from(enabled && needs), "{filter} {path}");
            }
        }
        // `Span::current()` inside the request is its span.
        let (lazy, _, _) = subscriber(true, "info");
        assert_eq!(send(&lazy, "/current").await.1, "request");
        // A `log` record that makes the span is asked about again with its own target.
        let (lazy, log, _) = subscriber(true, "warn,tokio_postgres=debug");
        send(&lazy, "/log-record").await;
        assert!(log.text().contains("DEBUG tokio_postgres: from log"), "{}", log.text());
        // What was compared: every line inside the request is in its span, the debug span made
        // inside it is its child, the second poll is in it too, and the panic's cause as well.
        let (lazy, log, _) = subscriber(true, "debug");
        send(&lazy, "/logs").await;
        send(&lazy, "/panics").await;
        let log = log.text();
        let span = "request{request_id=req-1 method=GET path=/logs}";
        let here = module_path!();
        for line in [
            format!(": {here}: first"),
            ":child: ".into(),
            format!(": {here}: second"),
        ] {
            assert!(log.contains(&format!("{span}{line}")), "{line}: {log}");
        }
        assert!(
            log.contains("request{request_id=req-1 method=GET path=/panics}: authplane::error"),
            "{log}"
        );
        // A warn log has no request span: the line stands alone.
        let (lazy, log, made) = subscriber(true, "warn");
        send(&lazy, "/logs").await;
        assert!(
            log.text()
                .contains(" WARN authplane::telemetry::request_span::tests: second"),
            "{}",
            log.text()
        );
        assert_eq!(made.count(), 0);
    }

    /// A pending request's fields, as the edge keeps them under `dispatch`.
    fn pending(dispatch: &Dispatch, path: &str) -> RequestSpan {
        let req = Request::get(path).body(()).unwrap();
        let id = HeaderValue::from_static("req-2");
        let span = tracing::dispatcher::with_default(dispatch, || RequestSpan::new(Some(&id), &req));
        assert!(span.is_pending());
        span
    }

    #[tokio::test]
    async fn per_layer_filters_keep_their_answers() {
        let logs = |lazy: bool| {
            let (info, warn, made) = (Buffer::default(), Buffer::default(), Made::default());
            let registry = tracing_subscriber::registry()
                .with(made.clone())
                .with(text_log(&info).with_filter(Filter::INFO))
                .with(text_log(&warn).with_filter(Filter::WARN));
            let dispatch = if lazy {
                Dispatch::new(RequestSpans::new(registry))
            } else {
                Dispatch::new(registry)
            };
            (dispatch, info, warn, made)
        };
        let (eager, eager_info, eager_warn, _) = logs(false);
        let (lazy, lazy_info, lazy_warn, made) = logs(true);
        send(&eager, "/logs").await;
        send(&lazy, "/logs").await;
        assert_eq!(made.count(), 1);
        assert_eq!(lines(&lazy_info), lines(&eager_info));
        assert_eq!(lines(&lazy_warn), lines(&eager_warn));
        assert_eq!(lines(&lazy_info).len(), 2, "first and second");
        let warn = lines(&lazy_warn);
        assert_eq!(
            warn.len(),
            1,
            "the first event, which made the span, is not at warn: {warn:?}"
        );
        // That layer's filter leaves the (info) request span out, as it does an eager one.
        assert!(
            warn[0].ends_with(" WARN authplane::telemetry::request_span::tests: second"),
            "{warn:?}"
        );
        assert!(lines(&lazy_info)[1].contains("request{request_id=req-1 method=GET path=/logs}: "));
    }

    #[test]
    fn a_panic_inside_a_request_leaves_the_thread_outside_it() {
        let (lazy, log, made) = subscriber(true, "info");
        let mut span = pending(&lazy, "/a");
        tracing::dispatcher::with_default(&lazy, || {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _in = span.enter();
                tracing::info!("inside");
                panic!("unwinds through the guard");
            }));
            assert!(panicked.is_err());
            tracing::info!("outside");
        });
        assert!(!span.is_pending(), "the span made inside was kept");
        assert_eq!(made.count(), 1);
        let log = log.text();
        assert!(log.contains("request{request_id=req-2 method=GET path=/a}: "), "{log}");
        assert!(
            log.contains(" INFO authplane::telemetry::request_span::tests: outside"),
            "{log}"
        );
    }

    #[test]
    fn a_request_polled_inside_another_gives_the_thread_back_to_it() {
        let (lazy, log, made) = subscriber(true, "info");
        let (mut outer, mut inner) = (pending(&lazy, "/outer"), pending(&lazy, "/inner"));
        tracing::dispatcher::with_default(&lazy, || {
            let _outer = outer.enter();
            for poll in ["first", "second"] {
                // The second time the inner request's span is made already.
                let _inner = inner.enter();
                tracing::info!("{poll} in the inner one");
            }
            tracing::info!("in the outer one");
        });
        assert_eq!(made.count(), 2);
        let log = log.text();
        let here = "authplane::telemetry::request_span::tests";
        for poll in ["first", "second"] {
            assert!(
                log.contains(&format!("path=/inner}}: {here}: {poll} in the inner one")),
                "{log}"
            );
        }
        assert!(
            log.contains(&format!("path=/outer}}: {here}: in the outer one")),
            "{log}"
        );
        assert!(
            !log.contains("path=/outer}:request"),
            "the inner request is no child: {log}"
        );
        let outer_line = log.lines().position(|l| l.contains("in the outer one"));
        assert_eq!(outer_line, Some(2), "the outer span made after the inner polls: {log}");
    }
}
