//! One JSON object per log line, written straight into the line buffer.
//!
//! tracing-subscriber's own JSON format keeps each span's fields as a JSON string and parses it
//! back into a map for every event, twice with the span list; on the admission path that cost
//! as much as the review itself. Here span fields are rendered once, when the span opens, as a
//! ready-to-splice fragment (`"uid":"…","namespace":"…"`), and an event only copies it.
//!
//! A line: `{"timestamp":…,"level":"INFO","target":…,"message":…,<event fields>,
//! "span":{"name":"review",<span fields>}}`. `span` is the innermost span, absent outside one;
//! `parents` lists the spans around it, outermost first, when there are any.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// The event format: see the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

/// Renders fields as comma-separated `"name":value` members, for spans and events alike.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut writer = writer;
        let mut members = Members::new(&mut writer, true);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut members = Members::new(&mut writer, first);
        fields.record(&mut members);
        members.result
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"target\":", metadata.level())?;
        write_string(&mut writer, metadata.target())?;
        let mut members = Members::new(&mut writer, false);
        event.record(&mut members);
        members.result?;
        if let Some(scope) = ctx.event_scope() {
            let mut spans = scope.from_root().peekable();
            let mut outer = Vec::new();
            while let Some(span) = spans.next() {
                if spans.peek().is_some() {
                    outer.push(span);
                    continue;
                }
                writer.write_str(",\"span\":")?;
                write_span(&mut writer, &span)?;
            }
            if !outer.is_empty() {
                writer.write_str(",\"parents\":[")?;
                for (i, span) in outer.iter().enumerate() {
                    if i > 0 {
                        writer.write_char(',')?;
                    }
                    write_span(&mut writer, span)?;
                }
                writer.write_char(']')?;
            }
        }
        writer.write_str("}\n")
    }
}

/// `{"name":…,<fields>}` from the fragment rendered when the span opened.
fn write_span<S>(writer: &mut Writer<'_>, span: &SpanRef<'_, S>) -> fmt::Result
where
    S: for<'lookup> LookupSpan<'lookup>,
{
    writer.write_str("{\"name\":")?;
    write_string(writer, span.name())?;
    let extensions = span.extensions();
    if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
        && !fields.fields.is_empty()
    {
        writer.write_char(',')?;
        writer.write_str(&fields.fields)?;
    }
    writer.write_char('}')
}

/// Writes visited fields as JSON object members; the first error stops the rest.
struct Members<'a, W> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: Write> Members<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Members {
            out,
            first,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            ","
        };
        self.result = self
            .out
            .write_str(separator)
            .and_then(|()| write_string(self.out, field.name()))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| value(self.out));
    }
}

impl<W: Write> Visit for Members<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        if value.is_finite() {
            self.member(field, |out| write!(out, "{value}"));
        } else {
            self.member(field, |out| write!(out, "\"{value}\""));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

fn write_string<W: Write + ?Sized>(out: &mut W, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what JSON strings cannot hold as is: `"`, `\` and control characters.
struct Escaped<'a, W: ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut clean_from = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[clean_from..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            clean_from = at + 1;
        }
        self.0.write_str(&text[clean_from..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn an_event_is_one_object_with_its_fields_and_span() {
        let found = lines(|| {
            let span = tracing::info_span!("review", uid = "u-1", namespace = "shop");
            let _entered = span.enter();
            tracing::info!(injected = ?["a", "b"], warnings = 2_u64, ok = true, "injected pull secrets");
        });
        assert_eq!(found.len(), 1);
        let line = &found[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "injected pull secrets");
        assert_eq!(line["injected"], r#"["a", "b"]"#);
        assert_eq!(line["warnings"], 2);
        assert_eq!(line["ok"], true);
        assert_eq!(line["target"], module_path!());
        assert_eq!(
            line["span"],
            serde_json::json!({"name": "review", "uid": "u-1", "namespace": "shop"})
        );
        assert!(line.get("parents").is_none());
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
    }

    #[test]
    fn outside_a_span_there_is_no_span_member() {
        let found = lines(|| tracing::warn!(count = -3_i64, "plain"));
        assert_eq!(found[0]["count"], -3);
        assert!(found[0].get("span").is_none());
        assert!(found[0].get("parents").is_none());
    }

    #[test]
    fn outer_spans_are_listed_outermost_first() {
        let found = lines(|| {
            let _outer = tracing::info_span!("controller", kind = "ClusterPullSecret").entered();
            let _middle = tracing::info_span!("reconcile", object = "shared").entered();
            let _inner = tracing::info_span!("write").entered();
            tracing::info!("nested");
        });
        assert_eq!(found[0]["span"], serde_json::json!({"name": "write"}));
        assert_eq!(
            found[0]["parents"],
            serde_json::json!([
                {"name": "controller", "kind": "ClusterPullSecret"},
                {"name": "reconcile", "object": "shared"},
            ])
        );
    }

    #[test]
    fn fields_recorded_later_join_the_span() {
        let found = lines(|| {
            let span = tracing::info_span!("work", first = 1_u64, later = tracing::field::Empty);
            span.record("later", "set");
            let _entered = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(found[0]["span"]["first"], 1);
        assert_eq!(found[0]["span"]["later"], "set");
    }

    #[test]
    fn hostile_text_stays_one_valid_line() {
        let hostile = "quote \" backslash \\ newline \n tab \t nul \0 bell \u{7} é ✓ \u{2028}";
        let found = lines(|| {
            let span = tracing::info_span!("review", pod = hostile);
            let _entered = span.enter();
            tracing::info!(image = hostile, debug = ?hostile, "{hostile}");
        });
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["image"], hostile);
        assert_eq!(found[0]["message"], hostile);
        assert_eq!(found[0]["span"]["pod"], hostile);
        assert_eq!(found[0]["debug"], format!("{hostile:?}"));
    }

    #[test]
    fn non_finite_numbers_are_strings() {
        let found = lines(|| tracing::info!(ratio = f64::NAN, big = f64::INFINITY, x = 1.5, "n"));
        assert_eq!(found[0]["ratio"], "NaN");
        assert_eq!(found[0]["big"], "inf");
        assert_eq!(found[0]["x"], 1.5);
    }
}
