//! The VRRP advertisement as decoded from, or encoded to, the wire.

use std::net::IpAddr;

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// RFC 3768.
    V2,
    /// RFC 9568 (obsoletes RFC 5798).
    V3,
}

/// VRRPv2 authentication (RFC 3768 §5.3.6); v3 has none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Auth {
    /// Type 0, the 8 auth-data bytes as carried (normally zero).
    None,
    /// Type 1, simple text password: 8 bytes, zero padded.
    SimplePassword([u8; 8]),
}

/// A decoded VRRP advertisement: the fields the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Advertisement {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (v3: Max Adver Int as carried;
    /// v2: the seconds field times 100).
    pub interval_cs: u16,
    /// The virtual addresses carried, in wire order; all of one family.
    pub addresses: Vec<IpAddr>,
    /// v2 only; `Auth::None` for v3.
    pub auth: Auth,
}
