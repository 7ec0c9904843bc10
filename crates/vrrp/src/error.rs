//! Why a received packet was refused: one variant per check, each with a
//! stable short name for metric labels.

use std::net::IpAddr;

use crate::checksum::ChecksumForm;

/// A received frame, IP packet or VRRP message that fails a check.
///
/// Variants follow RFC 3768 §7.1 and RFC 9568 §5 and §7.1 (with errata 8299
/// and 8301), plus the IP and link layers around the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 8-byte fixed VRRP header.
    #[error("VRRP message too short: {len} bytes, the fixed header needs 8")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Fewer bytes than the address count and version call for (§7.1 "complete packet").
    #[error("VRRP message truncated: {len} bytes, its header announces {expected}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the header announces.
        expected: usize,
    },
    /// More bytes than the address count and version call for.
    #[error("VRRP length {len} does not match {count} address(es): expected {expected} bytes")]
    LengthMismatch {
        /// Bytes in the message.
        len: usize,
        /// Count IPvX Addrs as carried.
        count: u8,
        /// Bytes that count calls for.
        expected: usize,
    },
    /// The length fits the address count in the other IP family.
    #[error("VRRP addresses are {carried} but the packet is {packet}")]
    AddressFamilyMismatch {
        /// Family the message's length implies ("IPv4" or "IPv6").
        carried: &'static str,
        /// Family of the enclosing IP packet.
        packet: &'static str,
    },
    /// IP source and destination are of different families (a caller error).
    #[error("IP source {src} and destination {dst} are of different families")]
    ContextFamilyMismatch {
        /// Source address given.
        src: IpAddr,
        /// Destination address given.
        dst: IpAddr,
    },
    /// Version nibble other than 2 or 3.
    #[error("unsupported VRRP version {0}")]
    BadVersion(u8),
    /// VRRPv2 is defined for IPv4 only (RFC 3768).
    #[error("VRRPv2 advertisement over IPv6")]
    V2OverIpv6,
    /// Type other than 1 (ADVERTISEMENT).
    #[error("unknown VRRP packet type {0} (only 1, ADVERTISEMENT, exists)")]
    BadType(u8),
    /// IPv4 TTL or IPv6 hop limit other than 255 (RFC 3768 §7.1, RFC 9568 §7.1).
    #[error("IP TTL / hop limit {0}, must be 255")]
    BadTtl(u8),
    /// The checksum matches none of the accepted forms.
    #[error("bad VRRP checksum {received:#06x}, expected {expected:#06x} ({form})")]
    BadChecksum {
        /// Checksum carried.
        received: u16,
        /// Checksum computed in the primary form for this version and family.
        expected: u16,
        /// The primary form `expected` was computed in.
        form: ChecksumForm,
    },
    /// VRID 0 (valid VRIDs are 1-255).
    #[error("VRID 0 is not valid")]
    ZeroVrid,
    /// Count IPvX Addrs is 0 (RFC 9568 §5.2.5 and erratum 8299; RFC 3768 §6.1
    /// gives every virtual router one or more addresses).
    #[error("advertisement carries no address")]
    ZeroAddressCount,
    /// (Max) Advertisement Interval is 0 (RFC 9568 §7.1 erratum 8301).
    #[error("advertisement interval is 0")]
    ZeroInterval,
    /// v2 auth type 2 (IP Authentication Header, RFC 2338), not supported.
    #[error("VRRPv2 IP AH authentication (auth type 2) is not supported")]
    AuthAhUnsupported,
    /// v2 auth type other than 0, 1 or 2.
    #[error("unknown VRRPv2 auth type {0}")]
    UnknownAuthType(u8),
    /// The auth type differs from the configured one (RFC 3768 §7.1).
    #[error("VRRPv2 auth type {received} does not match the configured {configured}")]
    AuthTypeMismatch {
        /// Auth type carried.
        received: u8,
        /// Auth type configured.
        configured: u8,
    },
    /// The simple password differs from the configured one.
    #[error("VRRPv2 password does not match the configured one")]
    PasswordMismatch,
    /// v2 advertisement interval differs from the configured one (RFC 3768 §7.1).
    #[error("VRRPv2 advertisement interval {received_s} s does not match the configured {configured_s} s")]
    IntervalMismatch {
        /// Seconds carried.
        received_s: u16,
        /// Seconds configured.
        configured_s: u16,
    },
    /// Link-layer frame shorter than its header.
    #[error("{layer} header truncated: {len} bytes")]
    FrameTruncated {
        /// Which header ("Ethernet", "IPv4", "IPv6", "Linux cooked").
        layer: &'static str,
        /// Bytes available.
        len: usize,
    },
    /// The frame carries neither IPv4 nor IPv6.
    #[error("not an IP frame (ethertype {0:#06x})")]
    NotIp(u16),
    /// The IP packet carries another protocol than VRRP (112).
    #[error("not VRRP (IP protocol {0})")]
    NotVrrp(u8),
    /// An IP header field is inconsistent (version, header length, total length).
    #[error("malformed {layer} header: {reason}")]
    BadIpHeader {
        /// "IPv4" or "IPv6".
        layer: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The IPv4 header checksum is wrong.
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// A fragment: VRRP adverts are never fragmented.
    #[error("fragmented IP packet")]
    Fragmented,
}

impl DecodeError {
    /// Every value [`DecodeError::kind`] can return, to pre-register metric labels.
    pub const KINDS: &'static [&'static str] = &[
        "too_short",
        "truncated",
        "length_mismatch",
        "address_family_mismatch",
        "context_family_mismatch",
        "bad_version",
        "v2_over_ipv6",
        "bad_type",
        "bad_ttl",
        "bad_checksum",
        "zero_vrid",
        "zero_address_count",
        "zero_interval",
        "auth_ah_unsupported",
        "unknown_auth_type",
        "auth_type_mismatch",
        "password_mismatch",
        "interval_mismatch",
        "frame_truncated",
        "not_ip",
        "not_vrrp",
        "bad_ip_header",
        "bad_ip_checksum",
        "fragmented",
    ];

    /// Stable short name of the failed check, for a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::AddressFamilyMismatch { .. } => "address_family_mismatch",
            DecodeError::ContextFamilyMismatch { .. } => "context_family_mismatch",
            DecodeError::BadVersion(_) => "bad_version",
            DecodeError::V2OverIpv6 => "v2_over_ipv6",
            DecodeError::BadType(_) => "bad_type",
            DecodeError::BadTtl(_) => "bad_ttl",
            DecodeError::BadChecksum { .. } => "bad_checksum",
            DecodeError::ZeroVrid => "zero_vrid",
            DecodeError::ZeroAddressCount => "zero_address_count",
            DecodeError::ZeroInterval => "zero_interval",
            DecodeError::AuthAhUnsupported => "auth_ah_unsupported",
            DecodeError::UnknownAuthType(_) => "unknown_auth_type",
            DecodeError::AuthTypeMismatch { .. } => "auth_type_mismatch",
            DecodeError::PasswordMismatch => "password_mismatch",
            DecodeError::IntervalMismatch { .. } => "interval_mismatch",
            DecodeError::FrameTruncated { .. } => "frame_truncated",
            DecodeError::NotIp(_) => "not_ip",
            DecodeError::NotVrrp(_) => "not_vrrp",
            DecodeError::BadIpHeader { .. } => "bad_ip_header",
            DecodeError::BadIpChecksum => "bad_ip_checksum",
            DecodeError::Fragmented => "fragmented",
        }
    }

    /// True when the frame is simply not VRRP (another ethertype or protocol),
    /// as opposed to a VRRP packet that fails a check.
    pub fn is_not_vrrp(&self) -> bool {
        matches!(self, DecodeError::NotIp(_) | DecodeError::NotVrrp(_))
    }
}

/// An advertisement that cannot be put on the wire as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// No address, or more than 255.
    #[error("an advertisement carries 1 to 255 addresses, not {0}")]
    AddressCount(usize),
    /// An address of the other family than the IP packet.
    #[error("address {addr} is not of the packet's family")]
    AddressFamily {
        /// The offending address.
        addr: IpAddr,
    },
    /// IP source and destination are of different families.
    #[error("IP source {src} and destination {dst} are of different families")]
    ContextFamilyMismatch {
        /// Source address given.
        src: IpAddr,
        /// Destination address given.
        dst: IpAddr,
    },
    /// VRRPv2 over IPv6.
    #[error("VRRPv2 is defined for IPv4 only")]
    V2OverIpv6,
    /// v2 interval not a whole number of seconds in 1-255, or v3 not in 1-4095 cs.
    #[error("advertisement interval {interval_cs} cs cannot be carried by {version}")]
    Interval {
        /// Interval asked, in centiseconds.
        interval_cs: u16,
        /// "VRRPv2" or "VRRPv3".
        version: &'static str,
    },
    /// VRID 0.
    #[error("VRID 0 is not valid")]
    ZeroVrid,
    /// Authentication on a v3 advertisement (v3 has none).
    #[error("VRRPv3 has no authentication")]
    AuthOnV3,
}
