//! From a link-layer frame or a whole IP packet to the VRRP message inside,
//! and back (an IP packet around an encoded advertisement).
//!
//! The IP total length (IPv4) or payload length (IPv6) bounds the VRRP
//! message, so Ethernet padding to 60 bytes is harmless. The IPv6 flow label
//! and traffic class are not looked at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::{self, ChecksumForm, IPPROTO_VRRP};
use crate::error::{DecodeError, EncodeError};
use crate::packet::{self, Advertisement, Family, IpContext, Received};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERNET_HEADER_LEN: usize = 14;
const LINUX_SLL_HEADER_LEN: usize = 16;
const LINUX_SLL2_HEADER_LEN: usize = 20;
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
/// DSCP CS6 (network control), as keepalived sends adverts.
const TOS_NETWORK_CONTROL: u8 = 0xc0;

/// An IP packet's addresses, TTL and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    /// Source, destination and TTL / hop limit.
    pub ip: IpContext,
    /// IPv4 protocol, or the IPv6 next header after any skipped extension headers.
    pub protocol: u8,
    /// The payload, bounded by the IP length (padding after it excluded).
    pub payload: &'a [u8],
}

/// Link-layer framings a capture or a socket can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with any 802.1Q / 802.1ad tags (pcap DLT_EN10MB).
    Ethernet,
    /// A bare IPv4 or IPv6 packet (pcap LINKTYPE_RAW, IPV4, IPV6).
    RawIp,
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10, pcap
    /// DLT_LINUX_SLL, 113).
    LinuxSll,
    /// Linux cooked capture v2 (`tcpdump -i any` with libpcap 1.10 and later,
    /// as on Debian bookworm; pcap DLT_LINUX_SLL2, 276).
    LinuxSll2,
}

/// The IP packet inside an Ethernet II frame (VLAN tags skipped).
pub fn ip_from_ethernet(frame: &[u8]) -> Result<&[u8], DecodeError> {
    let truncated = DecodeError::FrameTruncated {
        layer: "Ethernet",
        len: frame.len(),
    };
    let mut offset = 12;
    loop {
        let ethertype = frame
            .get(offset..offset + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| truncated.clone())?;
        offset += 2;
        match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => offset += 2,
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                debug_assert!(offset >= ETHERNET_HEADER_LEN);
                return Ok(&frame[offset..]);
            }
            other => return Err(DecodeError::NotIp(other)),
        }
    }
}

/// The IP packet inside a frame of the given link type.
pub fn ip_from_link(link: LinkType, frame: &[u8]) -> Result<&[u8], DecodeError> {
    match link {
        LinkType::Ethernet => ip_from_ethernet(frame),
        LinkType::RawIp => Ok(frame),
        // v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
        LinkType::LinuxSll => cooked(frame, LINUX_SLL_HEADER_LEN, 14, "Linux cooked"),
        // v2: protocol, reserved, interface index, ARPHRD, packet type, address
        // length, 8 address bytes.
        LinkType::LinuxSll2 => cooked(frame, LINUX_SLL2_HEADER_LEN, 0, "Linux cooked v2"),
    }
}

/// The IP packet after a Linux cooked header of `len` bytes whose protocol
/// (an ethertype) is at `protocol_at`.
fn cooked<'a>(
    frame: &'a [u8],
    len: usize,
    protocol_at: usize,
    layer: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let header = frame.get(..len).ok_or(DecodeError::FrameTruncated {
        layer,
        len: frame.len(),
    })?;
    match u16::from_be_bytes([header[protocol_at], header[protocol_at + 1]]) {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(&frame[len..]),
        other => Err(DecodeError::NotIp(other)),
    }
}

/// The upper-layer protocol of an IPv4 or IPv6 packet, read without checking
/// the header (checksum, lengths, fragmentation): what a capture reader needs to
/// tell a damaged or partial VRRP packet from another protocol's. IPv6
/// extension headers are followed as far as the bytes go, a fragment header's
/// next header included. None when the bytes end before the answer.
pub fn ip_protocol(packet: &[u8]) -> Option<u8> {
    match packet.first()? >> 4 {
        4 => packet.get(9).copied(),
        6 => {
            let mut next = *packet.get(6)?;
            let mut at = IPV6_HEADER_LEN;
            loop {
                match next {
                    0 | 43 | 60 => {
                        let units = *packet.get(at + 1)?;
                        next = *packet.get(at)?;
                        at += (usize::from(units) + 1) * 8;
                    }
                    44 => {
                        next = *packet.get(at)?;
                        at += 8;
                    }
                    other => return Some(other),
                }
            }
        }
        _ => None,
    }
}

/// Parses an IPv4 or IPv6 header (chosen by the version nibble).
pub fn parse_ip(packet: &[u8]) -> Result<IpPacket<'_>, DecodeError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(packet),
        Some(6) => parse_ipv6(packet),
        Some(_) => Err(DecodeError::BadIpHeader {
            layer: "IP",
            reason: "version is neither 4 nor 6",
        }),
        None => Err(DecodeError::FrameTruncated {
            layer: "IP",
            len: 0,
        }),
    }
}

fn parse_ipv4(packet: &[u8]) -> Result<IpPacket<'_>, DecodeError> {
    let truncated = DecodeError::FrameTruncated {
        layer: "IPv4",
        len: packet.len(),
    };
    let fixed = packet
        .get(..IPV4_MIN_HEADER_LEN)
        .ok_or_else(|| truncated.clone())?;
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN {
        return Err(DecodeError::BadIpHeader {
            layer: "IPv4",
            reason: "header length below 20 bytes",
        });
    }
    let total_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if total_len < header_len {
        return Err(DecodeError::BadIpHeader {
            layer: "IPv4",
            reason: "total length below header length",
        });
    }
    let packet = packet.get(..total_len).ok_or(truncated)?;
    if checksum::internet_checksum(&packet[..header_len]) != 0 {
        return Err(DecodeError::BadIpChecksum);
    }
    let more_fragments = fixed[6] & 0x20 != 0;
    let fragment_offset = u16::from_be_bytes([fixed[6] & 0x1f, fixed[7]]);
    if more_fragments || fragment_offset != 0 {
        return Err(DecodeError::Fragmented);
    }
    let src = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
    let dst = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    Ok(IpPacket {
        ip: IpContext {
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            ttl: fixed[8],
        },
        protocol: fixed[9],
        payload: &packet[header_len..],
    })
}

fn parse_ipv6(packet: &[u8]) -> Result<IpPacket<'_>, DecodeError> {
    let truncated = DecodeError::FrameTruncated {
        layer: "IPv6",
        len: packet.len(),
    };
    let fixed = packet
        .get(..IPV6_HEADER_LEN)
        .ok_or_else(|| truncated.clone())?;
    let payload_len = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    let mut payload = packet
        .get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len)
        .ok_or(truncated)?;
    let mut next_header = fixed[6];
    // Skip hop-by-hop, routing and destination options; refuse fragments.
    loop {
        match next_header {
            0 | 43 | 60 => {
                let bad = DecodeError::BadIpHeader {
                    layer: "IPv6",
                    reason: "extension header beyond the payload",
                };
                let (&nh, &units) = payload
                    .first()
                    .zip(payload.get(1))
                    .ok_or_else(|| bad.clone())?;
                let len = (usize::from(units) + 1) * 8;
                payload = payload.get(len..).ok_or(bad)?;
                next_header = nh;
            }
            44 => return Err(DecodeError::Fragmented),
            _ => break,
        }
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&fixed[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&fixed[24..40]);
    Ok(IpPacket {
        ip: IpContext {
            src: IpAddr::V6(Ipv6Addr::from(src)),
            dst: IpAddr::V6(Ipv6Addr::from(dst)),
            ttl: fixed[7],
        },
        protocol: next_header,
        payload,
    })
}

/// Decodes the VRRP advertisement in a whole IPv4 or IPv6 packet (as a raw
/// socket with the IP header delivers it).
pub fn decode_ip(packet: &[u8]) -> Result<Received, DecodeError> {
    let ip = parse_ip(packet)?;
    if ip.protocol != IPPROTO_VRRP {
        return Err(DecodeError::NotVrrp(ip.protocol));
    }
    packet::decode(ip.payload, &ip.ip)
}

/// Decodes the VRRP advertisement in a link-layer frame.
pub fn decode_frame(link: LinkType, frame: &[u8]) -> Result<Received, DecodeError> {
    decode_ip(ip_from_link(link, frame)?)
}

/// Encodes an advertisement inside an IPv4 or IPv6 packet from `ip.src` to
/// `ip.dst` with TTL / hop limit `ip.ttl` (traffic class 0xc0, IPv4 ID 0, DF
/// clear, IPv6 flow label 0).
pub fn encode_ip(
    advert: &Advertisement,
    ip: &IpContext,
    form: ChecksumForm,
) -> Result<Vec<u8>, EncodeError> {
    let message = packet::encode(advert, ip, form)?;
    // encode() has checked that src and dst agree.
    let mut out = Vec::with_capacity(IPV6_HEADER_LEN + message.len());
    match (ip.src, ip.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // A message is at most 8 + 255 * 4 + 8 bytes: the length fits.
            let total = (IPV4_MIN_HEADER_LEN + message.len()) as u16;
            out.extend_from_slice(&[0x45, TOS_NETWORK_CONTROL]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, ip.ttl, IPPROTO_VRRP, 0, 0]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
            let sum = checksum::internet_checksum(&out);
            out[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            // At most 8 + 255 * 16 bytes: fits in 16 bits.
            let len = message.len() as u16;
            out.extend_from_slice(&[0x6c, 0x00, 0, 0]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[IPPROTO_VRRP, ip.ttl]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        _ => {
            return Err(EncodeError::ContextFamilyMismatch {
                src: ip.src,
                dst: ip.dst,
            })
        }
    }
    out.extend_from_slice(&message);
    Ok(out)
}

/// The Ethernet destination MAC of a VRRP advert to `dst`: the IPv4 or IPv6
/// multicast MAC for a group, `None` for unicast (the neighbour's MAC).
pub fn multicast_mac(dst: IpAddr) -> Option<[u8; 6]> {
    match dst {
        IpAddr::V4(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => None,
    }
}

/// The VRRP virtual router MAC of `vrid` in `family` (RFC 9568 §7.3):
/// 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6.
pub fn virtual_router_mac(family: Family, vrid: u8) -> [u8; 6] {
    let kind = match family {
        Family::Ipv4 => 0x01,
        Family::Ipv6 => 0x02,
    };
    [0x00, 0x00, 0x5e, 0x00, kind, vrid]
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

    /// s3c frame 1, unicast, old_unicast_checksum.
    const S3C_FRAME: &str =
        "020000000200020000000100080045c00024000e0000ff702e74c6120001c6120002310f9602000a04e9c6120097c6120098";

    #[test]
    fn cooked_v2_and_the_protocol_of_damaged_packets() {
        let advert = Advertisement {
            version: crate::packet::Version::V3,
            vrid: 5,
            priority: 100,
            interval_cs: 100,
            addresses: vec!["198.18.0.100".parse().unwrap()],
            auth: crate::packet::Auth::None,
        };
        let ctx = IpContext::new("198.18.0.1".parse().unwrap(), "224.0.0.18".parse().unwrap());
        let ip = encode_ip(&advert, &ctx, ChecksumForm::PseudoHeader).unwrap();
        // protocol 0x0800, reserved, ifindex 2, ARPHRD_ETHER, outgoing, 6, MAC + 2 pad.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6];
        sll2.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        sll2.extend_from_slice(&ip);
        assert_eq!(
            decode_frame(LinkType::LinuxSll2, &sll2).unwrap().advert,
            advert
        );
        sll2[1] = 0x06;
        assert_eq!(
            ip_from_link(LinkType::LinuxSll2, &sll2).unwrap_err(),
            DecodeError::NotIp(0x0806)
        );
        // A bad header checksum, a fragment, a cut: the protocol is still read.
        let mut bad = ip.clone();
        bad[10] ^= 0xff;
        assert_eq!(parse_ip(&bad).unwrap_err(), DecodeError::BadIpChecksum);
        assert_eq!(ip_protocol(&bad), Some(IPPROTO_VRRP));
        assert_eq!(ip_protocol(&ip[..10]), Some(IPPROTO_VRRP));
        assert_eq!(ip_protocol(&ip[..9]), None);
        // IPv6: hop-by-hop, then a fragment header of UDP.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        v6.extend_from_slice(&[0; 32]);
        v6.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        v6.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(ip_protocol(&v6), Some(17));
        assert_eq!(parse_ip(&v6).unwrap_err(), DecodeError::Fragmented);
        assert_eq!(ip_protocol(&v6[..48]), None);
    }

    #[test]
    fn padded_frame_is_bounded_by_ip_length() {
        let mut frame = hex(S3C_FRAME);
        frame.resize(60, 0);
        let got = decode_frame(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(got.checksum_form, ChecksumForm::OldUnicast);
        assert_eq!(got.advert.vrid, 15);
        assert_eq!(got.ip.dst, "198.18.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn vlan_tagged_frame() {
        let frame = hex(S3C_FRAME);
        let tagged = [&frame[..12], &[0x81, 0x00, 0x00, 0x2a], &frame[12..]].concat();
        assert_eq!(
            decode_frame(LinkType::Ethernet, &tagged)
                .unwrap()
                .advert
                .vrid,
            15
        );
    }

    #[test]
    fn ip_layer_errors() {
        let frame = hex(S3C_FRAME);
        let ip = &frame[14..];
        let kind = |p: &[u8]| decode_ip(p).unwrap_err().kind();
        let mut bad = ip.to_vec();
        bad[12] ^= 1;
        assert_eq!(kind(&bad), "bad_ip_checksum");
        assert_eq!(kind(&ip[..30]), "frame_truncated");
        let mut frag = ip.to_vec();
        frag[6] = 0x20;
        frag[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::internet_checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(kind(&frag), "fragmented");
        let mut other = ip.to_vec();
        other[9] = 17;
        other[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::internet_checksum(&other[..20]);
        other[10..12].copy_from_slice(&sum.to_be_bytes());
        assert!(decode_ip(&other).unwrap_err().is_not_vrrp());
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            decode_frame(LinkType::Ethernet, &arp).unwrap_err(),
            DecodeError::NotIp(0x0806)
        );
    }

    #[test]
    fn encode_ip_round_trips_both_families() {
        let frame = hex(S3C_FRAME);
        let received = decode_frame(LinkType::Ethernet, &frame).unwrap();
        let packet = encode_ip(&received.advert, &received.ip, ChecksumForm::OldUnicast).unwrap();
        // Same bytes as captured except the IPv4 ID (keepalived counts up).
        assert_eq!(packet[..4], frame[14..18]);
        assert_eq!(packet[20..], frame[34..]);
        assert_eq!(decode_ip(&packet).unwrap(), received);

        let s4 =
            hex("3110960200640d01fe80000000000000000000000000001620010db80000000a0000000000000100");
        let ctx = IpContext::new(
            "fe80::ff:fe00:100".parse().unwrap(),
            "ff02::12".parse().unwrap(),
        );
        let advert = packet::decode(&s4, &ctx).unwrap().advert;
        let packet = encode_ip(&advert, &ctx, ChecksumForm::PseudoHeader).unwrap();
        assert_eq!(packet[40..], s4[..]);
        let back = decode_ip(&packet).unwrap();
        assert_eq!(back.advert, advert);
        assert_eq!(back.checksum_form, ChecksumForm::PseudoHeader);
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let s4 =
            hex("3110960200640d01fe80000000000000000000000000001620010db80000000a0000000000000100");
        let ctx = IpContext::new(
            "fe80::ff:fe00:100".parse().unwrap(),
            "ff02::12".parse().unwrap(),
        );
        let advert = packet::decode(&s4, &ctx).unwrap().advert;
        let mut packet = encode_ip(&advert, &ctx, ChecksumForm::PseudoHeader).unwrap();
        // Insert an 8-byte hop-by-hop header (next header 112, PadN) before the message.
        let hbh = [IPPROTO_VRRP, 0, 1, 4, 0, 0, 0, 0];
        packet.splice(40..40, hbh);
        packet[6] = 0;
        let len = u16::from_be_bytes([packet[4], packet[5]]) + 8;
        packet[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode_ip(&packet).unwrap().advert, advert);
        packet[40] = 44;
        assert_eq!(decode_ip(&packet).unwrap_err(), DecodeError::Fragmented);
    }

    #[test]
    fn macs() {
        assert_eq!(
            multicast_mac("224.0.0.18".parse().unwrap()),
            Some([0x01, 0x00, 0x5e, 0x00, 0x00, 0x12])
        );
        assert_eq!(
            multicast_mac("ff02::12".parse().unwrap()),
            Some([0x33, 0x33, 0x00, 0x00, 0x00, 0x12])
        );
        assert_eq!(multicast_mac("198.18.0.2".parse().unwrap()), None);
        assert_eq!(
            virtual_router_mac(Family::Ipv4, 81),
            [0, 0, 0x5e, 0, 1, 0x51]
        );
    }
}
