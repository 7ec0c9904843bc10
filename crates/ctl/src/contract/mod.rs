//! The typed contract between vrrpd, lbd and vrrpctl: one struct per request's
//! params, per reply and per event payload. Producers build these structs and
//! serialise them; consumers deserialise them. `docs/control.md` documents the JSON
//! they make and `tests/contract_doc.rs` fails when a documented field disappears.
//!
//! Compatibility rules:
//! - Replies, events and status are read tolerantly: unknown fields are ignored and
//!   a missing `Option` field reads as `None`, so a newer daemon does not break an
//!   older vrrpctl or lbd (and the reverse). An unknown VRRP state reads as
//!   [`VrrpState::Unknown`].
//! - Request params of operator commands are read strictly (unknown fields refused):
//!   a daemon that does not understand a parameter refuses the request rather than
//!   carrying out something else than was asked.
//! - Durations are numbers of milliseconds in fields ending in `_ms`, rounded to
//!   0.1 ms ([`ms`]); names are plain strings (snake_case, or the VRRP state names
//!   of RFC 9568 in upper case), never a Rust enum variant as an object.

pub mod lbd;
pub mod vrrpd;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A VRRP state as vrrpd reports it: the RFC's names, upper case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VrrpState {
    /// Starting up (RFC 9568 `Initialize`).
    #[serde(rename = "INIT")]
    Init,
    /// Listening to the master.
    #[serde(rename = "BACKUP")]
    Backup,
    /// Holding the VIPs.
    #[serde(rename = "MASTER")]
    Master,
    /// A link or tracked object is down.
    #[serde(rename = "FAULT")]
    Fault,
    /// Held out of elections by the operator.
    #[serde(rename = "MAINTENANCE")]
    Maintenance,
    /// A state this reader does not know (a newer peer), or none reported.
    #[serde(rename = "UNKNOWN", other)]
    Unknown,
}

impl VrrpState {
    /// The wire name: `MASTER`, `BACKUP`, ...
    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
            VrrpState::Maintenance => "MAINTENANCE",
            VrrpState::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for VrrpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A duration in milliseconds, rounded to 0.1 ms (what `_ms` fields carry).
pub fn ms(d: Duration) -> f64 {
    round_ms(d.as_secs_f64() * 1000.0)
}

/// Milliseconds rounded to 0.1 ms, so that JSON carries `1.2`, not `1.2000000000000002`.
pub fn round_ms(ms: f64) -> f64 {
    if ms.is_finite() {
        (ms * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_travel_as_rfc_names_and_unknown_ones_are_tolerated() {
        for s in [
            VrrpState::Init,
            VrrpState::Backup,
            VrrpState::Master,
            VrrpState::Fault,
            VrrpState::Maintenance,
            VrrpState::Unknown,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<VrrpState>(&json).unwrap(), s);
        }
        assert_eq!(
            serde_json::from_str::<VrrpState>("\"STANDBY\"").unwrap(),
            VrrpState::Unknown
        );
    }

    #[test]
    fn milliseconds_carry_no_float_noise() {
        assert_eq!(ms(Duration::from_micros(1_234_567)), 1234.6);
        assert_eq!(serde_json::to_string(&round_ms(0.1 + 0.2)).unwrap(), "0.3");
        assert_eq!(round_ms(f64::NAN), 0.0);
    }
}
