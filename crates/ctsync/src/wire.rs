//! Wire format between the nodes: one JSON object per line, versioned.
//!
//! ```text
//! {"v":1,"kind":"new","entry":{"orig":{...},"reply":{...},"status":410,...}}
//! ```

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::netlink::{Event, EventKind};

/// The version this crate writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// Why a line could not be read. It says the JSON error's text itself and does not
/// return it as `source()` as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not valid JSON, or not a sync record.
    #[error("malformed sync record: {0}")]
    Json(serde_json::Error),
    /// Written by an incompatible version.
    #[error("unsupported sync record version {0} (this node reads {WIRE_VERSION})")]
    Version(u32),
}

// By hand, not `#[from]`, which would make the JSON error the source too.
impl From<serde_json::Error> for WireError {
    fn from(error: serde_json::Error) -> Self {
        WireError::Json(error)
    }
}

// Plain fields, no `flatten`: that makes serde buffer every record as a map of
// values first, which cost more than the rest of the receiver's work.
#[derive(Serialize)]
struct RecordOut<'a> {
    v: u32,
    kind: EventKind,
    entry: &'a Entry,
}

#[derive(Deserialize)]
struct Version {
    v: u32,
}

#[derive(Deserialize)]
struct RecordIn {
    v: u32,
    kind: EventKind,
    entry: Entry,
}

/// Encodes an event as one line, newline included.
pub fn encode_line(event: &Event) -> String {
    let rec = RecordOut {
        v: WIRE_VERSION,
        kind: event.kind,
        entry: &event.entry,
    };
    // Serializing plain data to a String cannot fail; fall back to an empty record.
    let mut s = serde_json::to_string(&rec).unwrap_or_default();
    s.push('\n');
    s
}

/// Decodes one line (with or without its newline).
pub fn decode_line(line: &str) -> Result<Event, WireError> {
    match serde_json::from_str::<RecordIn>(line) {
        Ok(RecordIn { v, kind, entry }) if v == WIRE_VERSION => Ok(Event { kind, entry }),
        Ok(RecordIn { v, .. }) => Err(WireError::Version(v)),
        // Another version may well have another shape: say which version it is.
        Err(e) => match serde_json::from_str::<Version>(line) {
            Ok(Version { v }) if v != WIRE_VERSION => Err(WireError::Version(v)),
            _ => Err(WireError::Json(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_json_error_once() {
        let Err(e) = decode_line("{\"v\":1}") else {
            panic!("a record without kind and entry decodes");
        };
        let WireError::Json(inner) = &e else {
            panic!("not a JSON error: {e}");
        };
        let inner = inner.to_string();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&inner).count(), 1, "{chain}");
        assert!(chain.starts_with("malformed sync record: "), "{chain}");
    }
}
