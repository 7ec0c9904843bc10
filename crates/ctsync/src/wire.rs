//! Wire format between the nodes: one JSON object per line, versioned.
//!
//! ```text
//! {"v":1,"kind":"new","entry":{"orig":{...},"reply":{...},"status":410,...}}
//! ```

use serde::{Deserialize, Serialize};

use crate::netlink::Event;

/// The version this crate writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not valid JSON, or not a sync record.
    #[error("malformed sync record: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by an incompatible version.
    #[error("unsupported sync record version {0} (this node reads {WIRE_VERSION})")]
    Version(u32),
}

#[derive(Serialize)]
struct RecordOut<'a> {
    v: u32,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Deserialize)]
struct Version {
    v: u32,
}

#[derive(Deserialize)]
struct RecordIn {
    #[serde(flatten)]
    event: Event,
}

/// Encodes an event as one line, newline included.
pub fn encode_line(event: &Event) -> String {
    let rec = RecordOut {
        v: WIRE_VERSION,
        event,
    };
    // Serializing plain data to a String cannot fail; fall back to an empty record.
    let mut s = serde_json::to_string(&rec).unwrap_or_default();
    s.push('\n');
    s
}

/// Decodes one line (with or without its newline).
pub fn decode_line(line: &str) -> Result<Event, WireError> {
    let Version { v } = serde_json::from_str(line)?;
    if v != WIRE_VERSION {
        return Err(WireError::Version(v));
    }
    let rec: RecordIn = serde_json::from_str(line)?;
    Ok(rec.event)
}
