//! The VRRP advertisement as decoded from, or encoded to, the wire.
//!
//! [`decode`] takes the VRRP message (the IP payload) and the IP facts around
//! it ([`IpContext`]); [`crate::frame`] gets there from an IP packet or an
//! Ethernet frame. [`encode`] is the reverse. Both are pure functions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::{self, ChecksumForm};
use crate::error::{DecodeError, EncodeError};

/// Bytes of the fixed header shared by v2 and v3.
const FIXED_HEADER_LEN: usize = 8;
/// Bytes of the VRRPv2 authentication data trailer.
const V2_AUTH_DATA_LEN: usize = 8;
/// The only TTL / hop limit a VRRP packet may arrive with (RFC 9568 §7.1).
pub const REQUIRED_TTL: u8 = 255;
/// Type 1, ADVERTISEMENT: the only VRRP packet type.
const TYPE_ADVERTISEMENT: u8 = 1;
/// Largest VRRPv3 Max Adver Int (12 bits, centiseconds).
pub const V3_MAX_INTERVAL_CS: u16 = 0x0fff;

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// RFC 3768.
    V2,
    /// RFC 9568 (obsoletes RFC 5798).
    V3,
}

impl Version {
    /// The 4-bit version number carried on the wire.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
    /// The version a wire number names, if any.
    pub fn from_number(number: u8) -> Option<Version> {
        match number {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }
    /// Whether this version carries an advertisement interval of `interval_cs`
    /// centiseconds: v2 whole seconds 1..=255 (an 8-bit field in seconds), v3
    /// 1..=4095 cs (12 bits). The one statement of the rule: configuration
    /// checks and run-time changes ask it.
    pub fn carries_interval_cs(self, interval_cs: u16) -> bool {
        match self {
            Version::V2 => (100..=25_500).contains(&interval_cs) && interval_cs % 100 == 0,
            Version::V3 => (1..=V3_MAX_INTERVAL_CS).contains(&interval_cs),
        }
    }
}

/// VRRPv2 authentication (RFC 3768 §5.3.6); v3 has none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Auth {
    /// Type 0. The 8 auth-data bytes are sent as zero and ignored on receipt
    /// (RFC 3768 §5.3.10).
    None,
    /// Type 1, simple text password (RFC 2338; keepalived `auth_type PASS`):
    /// 8 bytes, zero padded.
    SimplePassword([u8; 8]),
}

impl Auth {
    /// The Auth Type field value.
    pub fn type_code(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::SimplePassword(_) => 1,
        }
    }

    /// A simple password from configuration text: at most 8 bytes, zero padded
    /// (longer text is cut to 8 bytes, as keepalived does).
    pub fn simple_password(text: &str) -> Auth {
        let mut data = [0u8; 8];
        for (slot, byte) in data.iter_mut().zip(text.bytes()) {
            *slot = byte;
        }
        Auth::SimplePassword(data)
    }
}

/// Address family of the IP packet carrying an advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Family {
    /// IPv4: 4-byte addresses.
    Ipv4,
    /// IPv6: 16-byte addresses.
    Ipv6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// Bytes per address.
    pub fn address_len(self) -> usize {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }

    /// "IPv4" or "IPv6".
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }

    /// The VRRP multicast group of this family (224.0.0.18 or ff02::12).
    pub fn vrrp_group(self) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(checksum::VRRP_GROUP_V4),
            Family::Ipv6 => IpAddr::V6(checksum::VRRP_GROUP_V6),
        }
    }

    fn other(self) -> Family {
        match self {
            Family::Ipv4 => Family::Ipv6,
            Family::Ipv6 => Family::Ipv4,
        }
    }

    /// The family a bare VRRP message was sent in, inferred from its version
    /// and length (for messages seen without their IP header): v2 is IPv4, v3
    /// is whichever address size makes the length match the count.
    pub fn infer_from_message(message: &[u8]) -> Option<Family> {
        let (&first, &count) = (message.first()?, message.get(3)?);
        match first >> 4 {
            2 => Some(Family::Ipv4),
            3 => [Family::Ipv4, Family::Ipv6]
                .into_iter()
                .find(|f| message.len() == FIXED_HEADER_LEN + usize::from(count) * f.address_len()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The IP layer around a VRRP message: what decode checks it against and
/// what the v3 pseudo-header covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IpContext {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address (224.0.0.18, ff02::12, or a unicast peer).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit (received), or the value to send.
    pub ttl: u8,
}

impl IpContext {
    /// A context from `src` to `dst` with TTL / hop limit 255.
    pub fn new(src: IpAddr, dst: IpAddr) -> IpContext {
        IpContext {
            src,
            dst,
            ttl: REQUIRED_TTL,
        }
    }

    /// The family of source and destination, if they agree.
    pub fn family(&self) -> Option<Family> {
        let family = Family::of(self.src);
        (family == Family::of(self.dst)).then_some(family)
    }
}

/// A decoded VRRP advertisement: the fields the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Advertisement {
    /// Protocol version.
    pub version: Version,
    /// Virtual Router ID, 1-255.
    pub vrid: u8,
    /// Sender's priority: 255 address owner, 0 master releasing.
    pub priority: u8,
    /// Advertisement interval in centiseconds (v3: Max Adver Int as carried;
    /// v2: the seconds field times 100).
    pub interval_cs: u16,
    /// The virtual addresses carried, in wire order; all of one family.
    pub addresses: Vec<IpAddr>,
    /// v2 only; `Auth::None` for v3.
    pub auth: Auth,
}

impl Advertisement {
    /// RFC 3768 §7.1: the auth type, and for type 1 the password, must match
    /// the configured authentication. v3 adverts carry none: always Ok.
    pub fn verify_auth(&self, configured: &Auth) -> Result<(), DecodeError> {
        if self.version == Version::V3 {
            return Ok(());
        }
        match (&self.auth, configured) {
            (Auth::None, Auth::None) => Ok(()),
            (Auth::SimplePassword(got), Auth::SimplePassword(want)) if got == want => Ok(()),
            (Auth::SimplePassword(_), Auth::SimplePassword(_)) => {
                Err(DecodeError::PasswordMismatch)
            }
            (got, want) => Err(DecodeError::AuthTypeMismatch {
                received: got.type_code(),
                configured: want.type_code(),
            }),
        }
    }

    /// RFC 3768 §7.1: a v2 advert's interval must equal the configured one
    /// (`configured_cs` in centiseconds). v3 backups adopt the master's
    /// interval instead (RFC 9568 §6.4.2): always Ok.
    pub fn verify_interval(&self, configured_cs: u16) -> Result<(), DecodeError> {
        if self.version == Version::V3 || self.interval_cs == configured_cs {
            return Ok(());
        }
        Err(DecodeError::IntervalMismatch {
            received_s: self.interval_cs / 100,
            configured_s: configured_cs / 100,
        })
    }

    /// The family of the carried addresses (`None` when empty or mixed).
    pub fn family(&self) -> Option<Family> {
        let family = Family::of(*self.addresses.first()?);
        self.addresses
            .iter()
            .all(|a| Family::of(*a) == family)
            .then_some(family)
    }
}

/// A received advertisement and what its wire form said about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Received {
    /// The advertisement.
    pub advert: Advertisement,
    /// The IP layer it came in.
    pub ip: IpContext,
    /// The checksum as carried.
    pub checksum: u16,
    /// Which checksum form matched (see [`ChecksumForm`]).
    pub checksum_form: ChecksumForm,
}

// VRRPv2 (RFC 3768 §5.1):
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |   Auth Type   |   Adver Int   |          Checksum             |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                         IP Address (1)                        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                            .                                  |
//    |                            .                                  |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                         IP Address (n)                        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                     Authentication Data (1)                   |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                     Authentication Data (2)                   |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// VRRPv3 (RFC 9568 §5.1):
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |(rsvd) |     Max Adver Int     |          Checksum             |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                                                               |
//    +                                                               +
//    |                       IPvX Address(es)                        |
//    +                                                               +
//    |                                                               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// The header fields, before any semantic check.
struct Header {
    version: Version,
    vrid: u8,
    priority: u8,
    count: u8,
    /// v2: Auth Type; v3: high nibble of byte 4 (rsvd, ignored).
    auth_type: u8,
    interval_cs: u16,
    checksum: u16,
}

fn message_len(version: Version, family: Family, count: u8) -> usize {
    let trailer = match version {
        Version::V2 => V2_AUTH_DATA_LEN,
        Version::V3 => 0,
    };
    FIXED_HEADER_LEN + usize::from(count) * family.address_len() + trailer
}

/// Version, type, family and length checks: everything about the shape.
fn parse_header(message: &[u8], family: Family) -> Result<Header, DecodeError> {
    let len = message.len();
    let Some(fixed) = message.get(..FIXED_HEADER_LEN) else {
        return Err(DecodeError::TooShort { len });
    };
    let number = fixed[0] >> 4;
    let version = Version::from_number(number).ok_or(DecodeError::BadVersion(number))?;
    let kind = fixed[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::BadType(kind));
    }
    if version == Version::V2 && family == Family::Ipv6 {
        return Err(DecodeError::V2OverIpv6);
    }
    let count = fixed[3];
    if count == 0 {
        return Err(DecodeError::ZeroAddressCount);
    }
    let expected = message_len(version, family, count);
    if len != expected {
        let other = family.other();
        if version == Version::V3 && len == message_len(version, other, count) {
            return Err(DecodeError::AddressFamilyMismatch {
                carried: other.name(),
                packet: family.name(),
            });
        }
        if len < expected {
            return Err(DecodeError::Truncated { len, expected });
        }
        return Err(DecodeError::LengthMismatch {
            len,
            count,
            expected,
        });
    }
    let interval_cs = match version {
        Version::V2 => u16::from(fixed[5]) * 100,
        Version::V3 => u16::from_be_bytes([fixed[4], fixed[5]]) & V3_MAX_INTERVAL_CS,
    };
    Ok(Header {
        version,
        vrid: fixed[1],
        priority: fixed[2],
        count,
        auth_type: fixed[4],
        interval_cs,
        checksum: u16::from_be_bytes([fixed[6], fixed[7]]),
    })
}

/// The checks after the checksum, and the fields into an [`Advertisement`].
fn build_advert(
    message: &[u8],
    family: Family,
    header: &Header,
) -> Result<Advertisement, DecodeError> {
    if header.vrid == 0 {
        return Err(DecodeError::ZeroVrid);
    }
    let addr_end = FIXED_HEADER_LEN + usize::from(header.count) * family.address_len();
    let auth = match header.version {
        Version::V3 => Auth::None,
        Version::V2 => match header.auth_type {
            0 => Auth::None,
            1 => {
                let mut data = [0u8; 8];
                data.copy_from_slice(&message[addr_end..addr_end + V2_AUTH_DATA_LEN]);
                Auth::SimplePassword(data)
            }
            2 => return Err(DecodeError::AuthAhUnsupported),
            other => return Err(DecodeError::UnknownAuthType(other)),
        },
    };
    if header.interval_cs == 0 {
        return Err(DecodeError::ZeroInterval);
    }
    let addresses = message[FIXED_HEADER_LEN..addr_end]
        .chunks_exact(family.address_len())
        .map(|raw| match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
            Family::Ipv6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(raw);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        })
        .collect();
    Ok(Advertisement {
        version: header.version,
        vrid: header.vrid,
        priority: header.priority,
        interval_cs: header.interval_cs,
        addresses,
        auth,
    })
}

/// The forms a received checksum is tried in, most expected first.
fn accepted_forms(version: Version, family: Family) -> &'static [ChecksumForm] {
    match (version, family) {
        (Version::V2, _) => &[ChecksumForm::MessageOnly],
        (Version::V3, Family::Ipv6) => &[ChecksumForm::PseudoHeader],
        (Version::V3, Family::Ipv4) => &[
            ChecksumForm::PseudoHeader,
            ChecksumForm::MessageOnly,
            ChecksumForm::OldUnicast,
        ],
    }
}

/// Decodes and checks a received VRRP message (the IP payload, bounded by the
/// IP length) against the IP layer it came in.
///
/// Checks, in order: fixed header present, version 2 or 3, type 1, v2 only
/// over IPv4, TTL / hop limit 255, a non-zero address count, the length
/// matching count and family, the checksum (v3 over IPv4 in any of the three
/// [`ChecksumForm`]s, reported in [`Received::checksum_form`]), VRID not 0,
/// v2 auth type 0 or 1, interval not 0. Auth and v2 interval against the
/// configuration are [`Advertisement::verify_auth`] and
/// [`Advertisement::verify_interval`].
pub fn decode(message: &[u8], ip: &IpContext) -> Result<Received, DecodeError> {
    decode_with_min_ttl(message, ip, REQUIRED_TTL)
}

/// [`decode`], accepting any TTL / hop limit from `min_ttl` up instead of 255
/// only. For unicast adverts from a peer that does not send 255 (keepalived
/// without `unicast_ttl 255`), when the operator chose to accept them; the RFC's
/// check (and so multicast) is `min_ttl` 255.
pub fn decode_with_min_ttl(
    message: &[u8],
    ip: &IpContext,
    min_ttl: u8,
) -> Result<Received, DecodeError> {
    let family = ip.family().ok_or(DecodeError::ContextFamilyMismatch {
        src: ip.src,
        dst: ip.dst,
    })?;
    let header = parse_header(message, family)?;
    if ip.ttl < min_ttl.max(1) {
        return Err(DecodeError::BadTtl(ip.ttl));
    }
    let forms = accepted_forms(header.version, family);
    let Some(&form) = forms
        .iter()
        .find(|&&form| checksum::verify(message, form, ip.src, ip.dst))
    else {
        let primary = forms[0];
        return Err(DecodeError::BadChecksum {
            received: header.checksum,
            expected: checksum::vrrp_checksum(message, primary, ip.src, ip.dst),
            form: primary,
        });
    };
    let advert = build_advert(message, family, &header)?;
    Ok(Received {
        advert,
        ip: *ip,
        checksum: header.checksum,
        checksum_form: form,
    })
}

/// Decodes a VRRP message seen without its IP layer: every check of
/// [`decode`] except the TTL and the checksum, which need the IP header.
/// Returns the advertisement and the checksum as carried.
pub fn decode_unverified(
    message: &[u8],
    family: Family,
) -> Result<(Advertisement, u16), DecodeError> {
    let header = parse_header(message, family)?;
    let advert = build_advert(message, family, &header)?;
    Ok((advert, header.checksum))
}

/// Encodes an advertisement into a VRRP message (the IP payload) sent from
/// `ip.src` to `ip.dst`, with its checksum.
///
/// `form` selects the VRRPv3-over-IPv4 checksum (the configured one; default
/// [`ChecksumForm::PseudoHeader`], as keepalived). VRRPv2 always uses the
/// message-only form and VRRPv3 over IPv6 always the pseudo-header: their
/// RFCs allow no other, so `form` is ignored there.
pub fn encode(
    advert: &Advertisement,
    ip: &IpContext,
    form: ChecksumForm,
) -> Result<Vec<u8>, EncodeError> {
    let family = ip.family().ok_or(EncodeError::ContextFamilyMismatch {
        src: ip.src,
        dst: ip.dst,
    })?;
    let count = u8::try_from(advert.addresses.len())
        .ok()
        .filter(|&c| c > 0)
        .ok_or(EncodeError::AddressCount(advert.addresses.len()))?;
    if let Some(&addr) = advert.addresses.iter().find(|&&a| Family::of(a) != family) {
        return Err(EncodeError::AddressFamily { addr });
    }
    if advert.vrid == 0 {
        return Err(EncodeError::ZeroVrid);
    }
    let mut out = Vec::with_capacity(message_len(advert.version, family, count));
    out.extend_from_slice(&[
        (advert.version.number() << 4) | TYPE_ADVERTISEMENT,
        advert.vrid,
        advert.priority,
        count,
    ]);
    if advert.version == Version::V2 && family == Family::Ipv6 {
        return Err(EncodeError::V2OverIpv6);
    }
    if advert.version == Version::V3 && advert.auth != Auth::None {
        return Err(EncodeError::AuthOnV3);
    }
    if !advert.version.carries_interval_cs(advert.interval_cs) {
        return Err(EncodeError::Interval {
            interval_cs: advert.interval_cs,
            version: match advert.version {
                Version::V2 => "VRRPv2",
                Version::V3 => "VRRPv3",
            },
        });
    }
    match advert.version {
        Version::V2 => {
            let seconds = u8::try_from(advert.interval_cs / 100).unwrap_or(u8::MAX);
            out.extend_from_slice(&[advert.auth.type_code(), seconds, 0, 0]);
        }
        Version::V3 => {
            // The 4 rsvd bits are sent as zero.
            out.extend_from_slice(&advert.interval_cs.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
    for addr in &advert.addresses {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    if advert.version == Version::V2 {
        match &advert.auth {
            Auth::None => out.extend_from_slice(&[0; V2_AUTH_DATA_LEN]),
            Auth::SimplePassword(data) => out.extend_from_slice(data),
        }
    }
    let form = match (advert.version, family) {
        (Version::V2, _) => ChecksumForm::MessageOnly,
        (Version::V3, Family::Ipv6) => ChecksumForm::PseudoHeader,
        (Version::V3, Family::Ipv4) => form,
    };
    let sum = checksum::vrrp_checksum(&out, form, ip.src, ip.dst);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn v4(src: &str, dst: &str) -> IpContext {
        IpContext::new(src.parse().unwrap(), dst.parse().unwrap())
    }

    /// s1 frame 1: v2, vrid 11, prio 150, 1 s, 198.18.0.100.
    const S1: &str = "210b96010001827bc61200640000000000000000";
    /// s3a frame 1: v3 IPv4 multicast, vrid 13, 10 cs, pseudo-header checksum.
    const S3A: &str = "310d9602000a0513c6120083c6120084";

    #[test]
    fn decodes_v2_no_auth() {
        let got = decode(&hex(S1), &v4("198.18.0.1", "224.0.0.18")).unwrap();
        assert_eq!(got.advert.version, Version::V2);
        assert_eq!(got.advert.vrid, 11);
        assert_eq!(got.advert.priority, 150);
        assert_eq!(got.advert.interval_cs, 100);
        assert_eq!(
            got.advert.addresses,
            vec!["198.18.0.100".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(got.advert.auth, Auth::None);
        assert_eq!(got.checksum, 0x827b);
        assert_eq!(got.checksum_form, ChecksumForm::MessageOnly);
    }

    #[test]
    fn each_check_has_its_error() {
        let ctx = v4("198.18.0.1", "224.0.0.18");
        let s1 = hex(S1);
        let with = |i: usize, b: u8| {
            let mut m = s1.clone();
            m[i] = b;
            m
        };
        let kind = |m: &[u8], c: &IpContext| decode(m, c).unwrap_err().kind();
        assert_eq!(kind(&s1[..7], &ctx), "too_short");
        assert_eq!(kind(&with(0, 0x41), &ctx), "bad_version");
        assert_eq!(kind(&with(0, 0x22), &ctx), "bad_type");
        assert_eq!(kind(&s1, &IpContext { ttl: 254, ..ctx }), "bad_ttl");
        // A lower minimum lets hop limit 64 through, and nothing below it.
        let ttl64 = IpContext { ttl: 64, ..ctx };
        assert!(decode_with_min_ttl(&s1, &ttl64, 64).is_ok());
        assert!(matches!(
            decode_with_min_ttl(&s1, &IpContext { ttl: 63, ..ctx }, 64),
            Err(DecodeError::BadTtl(63))
        ));
        assert_eq!(kind(&with(3, 0), &ctx), "zero_address_count");
        assert_eq!(kind(&with(3, 2), &ctx), "truncated");
        assert_eq!(
            kind(&[s1.as_slice(), &[0]].concat(), &ctx),
            "length_mismatch"
        );
        assert_eq!(kind(&with(2, 151), &ctx), "bad_checksum");
        let v6 = IpContext::new("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap());
        assert_eq!(kind(&s1, &v6), "v2_over_ipv6");
        let mixed = IpContext::new("198.18.0.1".parse().unwrap(), "ff02::12".parse().unwrap());
        assert_eq!(kind(&s1, &mixed), "context_family_mismatch");
        // Semantic checks come after the checksum: re-encode to fix it up.
        let fix = |mut m: Vec<u8>| {
            let sum = checksum::vrrp_checksum(&m, ChecksumForm::MessageOnly, ctx.src, ctx.dst);
            m[6..8].copy_from_slice(&sum.to_be_bytes());
            m
        };
        assert_eq!(kind(&fix(with(1, 0)), &ctx), "zero_vrid");
        assert_eq!(kind(&fix(with(4, 2)), &ctx), "auth_ah_unsupported");
        assert_eq!(kind(&fix(with(4, 3)), &ctx), "unknown_auth_type");
        assert_eq!(kind(&fix(with(5, 0)), &ctx), "zero_interval");
        // Every kind is listed for metric registration.
        assert!(DecodeError::KINDS.contains(&"zero_interval"));
    }

    #[test]
    fn v3_ipv4_accepts_three_forms_and_reports_which() {
        let unicast = v4("198.18.0.1", "198.18.0.2");
        let mut advert = decode(&hex(S3A), &v4("198.18.0.1", "224.0.0.18"))
            .unwrap()
            .advert;
        advert.vrid = 14;
        for form in [
            ChecksumForm::PseudoHeader,
            ChecksumForm::MessageOnly,
            ChecksumForm::OldUnicast,
        ] {
            let wire = encode(&advert, &unicast, form).unwrap();
            let got = decode(&wire, &unicast).unwrap();
            assert_eq!(got.checksum_form, form);
            assert_eq!(got.advert, advert);
        }
    }

    #[test]
    fn v3_length_of_other_family_is_a_family_mismatch() {
        // One IPv6 address makes 24 bytes: what count 1 would be in IPv6, not IPv4 (12).
        let advert = Advertisement {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            interval_cs: 100,
            addresses: vec!["2001:db8::1".parse().unwrap()],
            auth: Auth::None,
        };
        let v6 = IpContext::new("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap());
        let wire = encode(&advert, &v6, ChecksumForm::PseudoHeader).unwrap();
        let err = decode(&wire, &v4("198.18.0.1", "224.0.0.18")).unwrap_err();
        assert_eq!(
            err,
            DecodeError::AddressFamilyMismatch {
                carried: "IPv6",
                packet: "IPv4"
            }
        );
    }

    #[test]
    fn auth_and_interval_helpers() {
        let mut advert = decode(&hex(S1), &v4("198.18.0.1", "224.0.0.18"))
            .unwrap()
            .advert;
        assert_eq!(advert.verify_interval(100), Ok(()));
        assert_eq!(
            advert.verify_interval(200).unwrap_err().kind(),
            "interval_mismatch"
        );
        assert_eq!(advert.verify_auth(&Auth::None), Ok(()));
        let pass = Auth::simple_password("secret12");
        assert_eq!(
            advert.verify_auth(&pass).unwrap_err().kind(),
            "auth_type_mismatch"
        );
        advert.auth = pass.clone();
        assert_eq!(advert.verify_auth(&pass), Ok(()));
        assert_eq!(
            advert
                .verify_auth(&Auth::simple_password("secret"))
                .unwrap_err()
                .kind(),
            "password_mismatch"
        );
    }

    #[test]
    fn encode_refuses_what_the_wire_cannot_carry() {
        let ctx = v4("198.18.0.1", "224.0.0.18");
        let base = decode(&hex(S1), &ctx).unwrap().advert;
        let err = |a: Advertisement| encode(&a, &ctx, ChecksumForm::default()).unwrap_err();
        assert_eq!(
            err(Advertisement {
                interval_cs: 150,
                ..base.clone()
            }),
            EncodeError::Interval {
                interval_cs: 150,
                version: "VRRPv2"
            }
        );
        assert_eq!(
            err(Advertisement {
                addresses: vec![],
                ..base.clone()
            }),
            EncodeError::AddressCount(0)
        );
        assert_eq!(
            err(Advertisement {
                vrid: 0,
                ..base.clone()
            }),
            EncodeError::ZeroVrid
        );
        assert!(matches!(
            err(Advertisement {
                addresses: vec!["::1".parse().unwrap()],
                ..base.clone()
            }),
            EncodeError::AddressFamily { .. }
        ));
        assert_eq!(
            err(Advertisement {
                version: Version::V3,
                auth: Auth::simple_password("x"),
                ..base
            }),
            EncodeError::AuthOnV3
        );
    }

    #[test]
    fn infers_family_of_bare_messages() {
        assert_eq!(Family::infer_from_message(&hex(S1)), Some(Family::Ipv4));
        assert_eq!(Family::infer_from_message(&hex(S3A)), Some(Family::Ipv4));
        let s4 =
            hex("3110960200640d01fe80000000000000000000000000001620010db80000000a0000000000000100");
        assert_eq!(Family::infer_from_message(&s4), Some(Family::Ipv6));
        assert_eq!(Family::infer_from_message(&[0x45, 0, 0, 1]), None);
    }
}
