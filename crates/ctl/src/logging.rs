//! How both daemons log: to stderr, as text or one JSON object a line, filtered by
//! `RUST_LOG` (default `info`).
//!
//! Under systemd (`JOURNAL_STREAM` names the stderr we write to), every line starts
//! with its syslog priority, `<3>` error, `<4>` warning, `<6>` info, `<7>` debug and
//! trace (sd-daemon(3)), so that `journalctl -p warning` selects the warnings; the
//! timestamp is left to the journal. Why prefixes and not the journal's native
//! socket (tracing-journald): the lines keep their order with everything else the
//! daemon writes to stderr (a refused file's diagnostics), there is no second channel
//! that can fail on its own, and the same output works wherever stderr goes.

use std::fmt;
use std::str::FromStr;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `level target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and
    /// the event's fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// The syslog priority of a level, as sd-daemon(3) prefixes spell it.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM`
/// is `<device>:<inode>` of it (systemd.exec(5)). A child that inherited the
/// variable but writes elsewhere gets plain lines.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream
        .to_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
    else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes only the struct it is given; checked before it is read.
    if unsafe { libc::fstat(libc::STDERR_FILENO, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}

/// A duration in milliseconds rounded to 0.1 ms, for log fields
/// (`duration_ms = ms(took)`): `4.7`, not `4.7071819999999995`; the control
/// contract's `_ms` fields round the same way.
pub use crate::contract::ms;

/// `a, b, c`: a list in a log field, each item as it displays (no Rust Debug
/// quoting or type names).
pub fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `k=v, k=v`: a map in a log field.
pub fn pairs<K: fmt::Display, V: fmt::Display>(items: impl IntoIterator<Item = (K, V)>) -> String {
    list(items.into_iter().map(|(k, v)| format!("{k}={v}")))
}

/// Installs the global subscriber: `format` on stderr, `<N>` priority prefixes and
/// no timestamps when stderr is the journal, colours only on a terminal.
pub fn init(format: LogFormat) {
    let journal = stderr_is_journal();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(ansi);
    match (format, journal) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Text, true) => builder
            .event_format(Prioritised(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init(),
        (LogFormat::Json, false) => builder
            .event_format(tracing_subscriber::fmt::format().json().flatten_event(true))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init(),
        (LogFormat::Json, true) => builder
            .event_format(Prioritised(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init(),
    }
}

/// Writes an event as `inner` does, with the level's `<N>` priority before each of
/// its lines: a message of several lines stays at its priority in the journal,
/// which takes each line as an entry.
struct Prioritised<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        write!(
            writer,
            "{}",
            prefix_lines(&line, priority(event.metadata().level()))
        )
    }
}

/// `text` with `<priority>` before each line.
fn prefix_lines(text: &str, priority: u8) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split_inclusive('\n') {
        out.push('<');
        out.push_str(&priority.to_string());
        out.push('>');
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_carries_the_priority() {
        assert_eq!(prefix_lines("a\n", 4), "<4>a\n");
        assert_eq!(
            prefix_lines("refused:\nfile:1: bad\n", 3),
            "<3>refused:\n<3>file:1: bad\n"
        );
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::TRACE), 7);
    }

    #[test]
    fn fields_are_plain_values() {
        assert_eq!(ms(std::time::Duration::from_nanos(4_707_181)), 4.7);
        assert_eq!(ms(std::time::Duration::from_micros(1_260)), 1.3);
        assert_eq!(
            list(["198.18.0.100", "198.18.1.100"]),
            "198.18.0.100, 198.18.1.100"
        );
        assert_eq!(pairs([("edge", "MASTER")]), "edge=MASTER");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn a_stream_variable_naming_another_file_is_not_the_journal() {
        // The test's stderr is no journal stream: an arbitrary device:inode never
        // matches it, and a malformed value is ignored.
        std::env::set_var("JOURNAL_STREAM", "1:1");
        assert!(!stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", "garbage");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
    }
}
