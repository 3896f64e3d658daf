//! [`PlainFields`]: the text log's field formatter. It writes what tracing-subscriber's
//! `DefaultFields` writes, byte for byte, but without its styling calls when the output has no
//! colours (a log file, a collector): `DefaultFields` paints every field's name and `=` through
//! `nu_ansi_term` even then, and the request span's three fields, formatted for every request,
//! made that about 1.4% of an introspection request's CPU. Messages, errors, raw identifiers and
//! coloured output go to `DefaultFields`' own visitor, so they stay exactly as it writes them.

use std::cell::Cell;
use std::fmt;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, Default)]
pub struct PlainFields;

thread_local! {
    /// Each thread's staging buffer for [`PlainVisitor`], kept between uses.
    static STAGING: Cell<String> = const { Cell::new(String::new()) };
}

impl<'w> MakeVisitor<Writer<'w>> for PlainFields {
    type Visitor = PlainVisitor<'w>;

    fn make_visitor(&self, writer: Writer<'w>) -> PlainVisitor<'w> {
        PlainVisitor {
            writer,
            staged: STAGING.take(),
            is_empty: true,
            result: Ok(()),
        }
    }
}

pub struct PlainVisitor<'w> {
    writer: Writer<'w>,
    /// The plain fields not yet handed to `writer`: they go in one piece (a span's field string,
    /// which starts empty, then grows once rather than once for each name and value).
    staged: String,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Hands what is staged to the writer.
    fn flush(&mut self) {
        if !self.staged.is_empty() {
            if self.result.is_ok() {
                self.result = self.writer.write_str(&self.staged);
            }
            self.staged.clear();
        }
    }

    /// `DefaultFields`' visitor writes this field, continuing the line as this one would.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        self.flush();
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.delegate(|v| v.record_str(field, value));
        }
        self.record_debug(field, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.delegate(|v| v.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // `log` crate metadata: already written by the event formatter.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        if self.writer.has_ansi_escapes() || name == "message" || name.starts_with("r#") {
            return self.delegate(|v| v.record_debug(field, value));
        }
        if !self.is_empty {
            self.staged.push(' ');
        }
        self.is_empty = false;
        self.result = write!(self.staged, "{name}={value:?}");
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(mut self) -> fmt::Result {
        self.flush();
        STAGING.set(std::mem::take(&mut self.staged));
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.flush();
        &mut self.writer
    }
}

/// Writes the `request` span's fields (`layers::edge`: the request id, the method, the path)
/// into the text log's field string itself, so the fmt layer above it has nothing to format.
///
/// The span is made for a request (for every one, or for those that log:
/// [`super::RequestSpans`]) and its fields are read only when an event is logged inside it.
/// Recorded as `%` (`Display`) values, they went through the formatting machinery on every request (the span's creation took 2,300 instructions of an introspection's 50,000,
/// `scripts/bench-instructions`; 1,650 now); the edge records them as `&str` and this layer
/// writes `name=value` with three copies, which is what [`PlainFields`] writes for a `%`
/// value. (A `&str` is written quoted by `PlainFields`, as by `DefaultFields`: that is the one
/// difference this layer exists to avoid.) Any other span,
/// or a request span with a field that is not a `&str`, is left to the fmt layer. The fields
/// are plain in a terminal too, where `DefaultFields` would set the names in italics.
pub struct RequestSpanFields;

/// The span of a request ([`crate::layers::edge::REQUEST_SPAN`]).
fn is_request(meta: &Metadata<'_>) -> bool {
    (meta.target(), meta.name()) == crate::layers::edge::REQUEST_SPAN
}

impl<S> Layer<S> for RequestSpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_request(attrs.metadata()) {
            return;
        }
        let mut fields = StrFields {
            out: String::with_capacity(96),
            plain: true,
        };
        attrs.record(&mut fields);
        if fields.plain
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut()
                .insert(FormattedFields::<PlainFields>::new(fields.out));
        }
    }
}

/// `name=value` for each `&str` field, space-separated; `plain` false once another kind of
/// value comes (then the fmt layer formats the span as it would any other).
struct StrFields {
    out: String,
    plain: bool,
}

impl Visit for StrFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(field.name());
        self.out.push('=');
        self.out.push_str(value);
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {
        self.plain = false;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::format::FormatFields;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        pub(in crate::telemetry) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer \x1b[31mfailure")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    /// The same spans and events through a text layer with `fields`, as logged.
    fn log_with<F>(fields: F, ansi: bool) -> String
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Buffer::default();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(fields)
            .with_ansi(ansi)
            .without_time()
            .with_writer(out.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let id = "0b6c3d1e-5f4a-4b2c-9d8e-7f6a5b4c3d2e";
            let span = tracing::info_span!("request", request_id = %id, method = %"POST", path = %"/auth/token");
            let _in = span.enter();
            tracing::info!(
                client_id = "demo \"app\"",
                reason = "wrong secret",
                "client authentication failed"
            );
            tracing::warn!(
                r#type = "x",
                n = 3_i64,
                ok = true,
                ratio = 0.5,
                "with \x1b[1mansi\x1b[0m in it"
            );
            let e = Outer(Inner);
            tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed: {}", 7);
            tracing::info!(empty = "", debug = ?vec![1, 2]);
            span.record("path", "/auth/introspect");
        });
        out.text()
    }

    /// A request span and an event in it, through `layer`; `display` records the span's
    /// fields as `%` values, otherwise as `&str` (as `layers::edge` does).
    fn log_request_span<L>(layer: L, out: &Buffer, target_edge: bool, display: bool) -> String
    where
        L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let (id, method, path) = ("0b6c3d1e-5f4a-4b2c-9d8e-7f6a5b4c3d2e", "POST", "/auth/token");
            let span = match (target_edge, display) {
                (true, true) => {
                    tracing::info_span!(target: EDGE, "request", request_id = %id, method = %method, path = %path)
                }
                (true, false) => tracing::info_span!(target: EDGE, "request", request_id = id, method, path),
                (false, _) => tracing::info_span!("request", request_id = id, method, path),
            };
            let _in = span.enter();
            tracing::info!(client_id = "demo \"app\"", "client authentication failed");
            span.record("path", "/auth/introspect");
            tracing::warn!("after a record");
        });
        out.text()
    }

    const EDGE: &str = crate::layers::edge::REQUEST_SPAN.0;

    /// The text log as `telemetry::text_layer` makes it, without the time.
    pub(in crate::telemetry) fn text_log<S>(out: &Buffer) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        RequestSpanFields.and_then(
            tracing_subscriber::fmt::layer()
                .fmt_fields(PlainFields)
                .with_ansi(false)
                .without_time()
                .with_writer(out.clone()),
        )
    }

    #[test]
    fn the_request_span_reads_as_its_display_fields_would() {
        let (with_layer, display) = (Buffer::default(), Buffer::default());
        let written = log_request_span(text_log(&with_layer), &with_layer, true, false);
        let default = tracing_subscriber::fmt::layer()
            .fmt_fields(DefaultFields::new())
            .with_ansi(false)
            .without_time()
            .with_writer(display.clone());
        let expected = log_request_span(default, &display, true, true);
        assert_eq!(written, expected);
        assert!(
            written.contains("request{request_id=0b6c3d1e-5f4a-4b2c-9d8e-7f6a5b4c3d2e method=POST path=/auth/token"),
            "{written}"
        );
        // Fields recorded later are appended by the fmt layer, as before.
        assert!(
            written.contains(r#"path=/auth/token path="/auth/introspect"}"#),
            "{written}"
        );
    }

    #[test]
    fn other_spans_and_other_values_are_left_to_the_fmt_layer() {
        // Another target: its `&str` fields are quoted, as `PlainFields` writes them.
        let out = Buffer::default();
        let written = log_request_span(text_log(&out), &out, false, false);
        assert!(written.contains(r#"request{request_id="0b6c3d1e"#), "{written}");
        // The request span with `%` values: formatted by the fmt layer, to the same text.
        let out = Buffer::default();
        let written = log_request_span(text_log(&out), &out, true, true);
        assert!(
            written.contains("request{request_id=0b6c3d1e-5f4a-4b2c-9d8e-7f6a5b4c3d2e method=POST"),
            "{written}"
        );
    }

    #[test]
    fn plain_fields_write_what_default_fields_write() {
        for ansi in [false, true] {
            let plain = log_with(PlainFields, ansi);
            assert_eq!(plain, log_with(DefaultFields::new(), ansi), "ansi {ansi}");
            assert_eq!(plain.lines().count(), 4, "{plain}");
        }
        let plain = log_with(PlainFields, false);
        assert!(plain.contains("request{request_id=0b6c3d1e"), "{plain}");
        assert!(
            plain.contains("error=outer \\x1b[31mfailure error.sources=[inner cause]"),
            "{plain}"
        );
    }
}
