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
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::format::FormatFields;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

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
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
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
