//! The Internet checksum (RFC 1071) and the VRRP pseudo-headers.
//!
//! VRRPv2 sums the VRRP message alone (RFC 3768 §5.3.8). VRRPv3 over IPv6
//! prepends the IPv6 pseudo-header (RFC 8200 §8.1, next header 112). VRRPv3
//! over IPv4 is read two ways: RFC 5798 §5.2.8 prepends a pseudo-header for
//! both families (keepalived 2.2.7 does that), RFC 9568 §5.2.8 sums the
//! message alone for IPv4. A third, non-RFC form is keepalived's
//! `old_unicast_checksum`: the IPv4 pseudo-header with 224.0.0.18 as the
//! destination even for unicast.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number / IPv6 next header of VRRP.
pub const IPPROTO_VRRP: u8 = 112;

/// The VRRP IPv4 multicast group (RFC 9568 §5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The VRRP IPv6 multicast group (RFC 9568 §5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// How a VRRP checksum covers (or not) the IP addresses around the message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumForm {
    /// The VRRP message alone: VRRPv2 (RFC 3768), and VRRPv3 over IPv4 per RFC 9568 §5.2.8.
    MessageOnly,
    /// Pseudo-header {src, dst, length, 112} + message: VRRPv3 over IPv6, and
    /// VRRPv3 over IPv4 per RFC 5798 §5.2.8 (what keepalived sends).
    #[default]
    PseudoHeader,
    /// keepalived `old_unicast_checksum`: IPv4 pseudo-header with dst 224.0.0.18
    /// even for unicast (matches no RFC).
    OldUnicast,
}

impl ChecksumForm {
    /// Stable short name, for logs, metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumForm::MessageOnly => "message_only",
            ChecksumForm::PseudoHeader => "pseudo_header",
            ChecksumForm::OldUnicast => "old_unicast",
        }
    }
}

impl std::fmt::Display for ChecksumForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Adds `data` as big-endian 16-bit words to a running 32-bit sum; an odd
/// trailing byte is padded with zero (RFC 1071).
fn add_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum = fold_once(sum + u32::from(u16::from_be_bytes([pair[0], pair[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = fold_once(sum + (u32::from(*last) << 8));
    }
    sum
}

/// Keeps the sum below 2^17 so that adding a word can never overflow.
fn fold_once(sum: u32) -> u32 {
    (sum & 0xffff) + (sum >> 16)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = fold_once(sum);
    }
    // `sum` fits in 16 bits here.
    sum as u16
}

/// The one's complement sum of the pseudo-header for `len` bytes of VRRP
/// from `src` to `dst` (families must agree; otherwise only the message counts).
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // RFC 768-style layout {src, dst, 0, proto, len16}; same sum as the
            // RFC 8200 layout with a 32-bit length, as long as len < 65536.
            let sum = add_words(0, &s.octets());
            let sum = add_words(sum, &d.octets());
            let sum = add_words(sum, &[0, IPPROTO_VRRP]);
            add_words(sum, &(len as u32).to_be_bytes())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let sum = add_words(0, &s.octets());
            let sum = add_words(sum, &d.octets());
            let sum = add_words(sum, &(len as u32).to_be_bytes());
            add_words(sum, &[0, 0, 0, IPPROTO_VRRP])
        }
        _ => 0,
    }
}

/// The Internet checksum of `data` alone (the value to put in the field,
/// with the checksum field zeroed in `data`).
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(add_words(0, data))
}

/// The checksum of a VRRP `message` (checksum field zeroed or not: bytes 6..8
/// are skipped) in the given form, sent from `src` to `dst`.
pub fn vrrp_checksum(message: &[u8], form: ChecksumForm, src: IpAddr, dst: IpAddr) -> u16 {
    !fold(sum_with_form(message, form, src, dst, true))
}

/// True when the checksum carried in `message` is right for the given form.
pub fn verify(message: &[u8], form: ChecksumForm, src: IpAddr, dst: IpAddr) -> bool {
    // Summing with the checksum field in gives 0xffff when it is right; this
    // also accepts either one's complement zero (0x0000 or 0xffff).
    fold(sum_with_form(message, form, src, dst, false)) == 0xffff
}

fn sum_with_form(
    message: &[u8],
    form: ChecksumForm,
    src: IpAddr,
    dst: IpAddr,
    skip_field: bool,
) -> u32 {
    let start = match form {
        ChecksumForm::MessageOnly => 0,
        ChecksumForm::PseudoHeader => pseudo_header_sum(src, dst, message.len()),
        ChecksumForm::OldUnicast => {
            let dst = match src {
                IpAddr::V4(_) => IpAddr::V4(VRRP_GROUP_V4),
                IpAddr::V6(_) => dst,
            };
            pseudo_header_sum(src, dst, message.len())
        }
    };
    if skip_field && message.len() >= 8 {
        let sum = add_words(start, &message[..6]);
        add_words(sum, &message[8..])
    } else {
        add_words(start, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example words: 0001 f203 f4f5 f6f7 sum to 0x220d (folded 0xddf2).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(internet_checksum(&[0x12]), internet_checksum(&[0x12, 0x00]));
    }

    #[test]
    fn keepalived_v3_ipv4_forms() {
        // s3b frame 1 (unicast 198.18.0.1 -> 198.18.0.2): wire 0x1efc = pseudo-header form;
        // the JSON lists 0xaba4 as the message-only value.
        let msg = [
            0x31, 0x0e, 0x96, 0x02, 0x00, 0x0a, 0x1e, 0xfc, 0xc6, 0x12, 0x00, 0x8d, 0xc6, 0x12,
            0x00, 0x8e,
        ];
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(
            vrrp_checksum(&msg, ChecksumForm::PseudoHeader, src, dst),
            0x1efc
        );
        assert_eq!(
            vrrp_checksum(&msg, ChecksumForm::MessageOnly, src, dst),
            0xaba4
        );
        assert!(verify(&msg, ChecksumForm::PseudoHeader, src, dst));
        assert!(!verify(&msg, ChecksumForm::MessageOnly, src, dst));
        assert!(!verify(&msg, ChecksumForm::OldUnicast, src, dst));
    }
}
