//! Byte-level tests of the ctnetlink encoding, the wire format and the filter.

use std::net::IpAddr;

use crate::entry::{Entry, Status, TcpFlags, TcpInfo, TcpState, Tuple, L4};
use crate::filter::FlowFilter;
use crate::netlink::{push_message, Event, EventKind};
use crate::wire::{decode_line, encode_line, WireError};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An attribute header in host order.
fn h(len: u16, ty: u16) -> Vec<u8> {
    let mut v = len.to_ne_bytes().to_vec();
    v.extend_from_slice(&ty.to_ne_bytes());
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// CTA_TUPLE_* for TCP src:sport -> dst:dport, built by hand.
fn tuple_bytes(ty: u16, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    cat(&[
        &h(52, ty | 0x8000),
        &h(20, 0x8001),
        &h(8, 1),
        &src,
        &h(8, 2),
        &dst,
        &h(28, 0x8002),
        &h(5, 1),
        &[6, 0, 0, 0],
        &h(6, 2),
        &sport.to_be_bytes(),
        &[0, 0],
        &h(6, 3),
        &dport.to_be_bytes(),
        &[0, 0],
    ])
}

const CLIENT: [u8; 4] = [198, 18, 0, 10];
const VIP: [u8; 4] = [198, 18, 0, 100];
const SRV: [u8; 4] = [198, 18, 1, 21];
const SNAT: [u8; 4] = [198, 18, 1, 100];

/// client:40000 -> VIP:80, DNAT to srv1:80, SNAT to 198.18.1.100:20001.
fn balanced() -> Entry {
    Entry {
        orig: Tuple::tcp(ip("198.18.0.10"), 40000, ip("198.18.0.100"), 80),
        reply: Tuple::tcp(ip("198.18.1.21"), 80, ip("198.18.1.100"), 20001),
        status: Status(
            Status::SEEN_REPLY
                | Status::ASSURED
                | Status::CONFIRMED
                | Status::SRC_NAT
                | Status::DST_NAT
                | Status::SRC_NAT_DONE
                | Status::DST_NAT_DONE,
        ),
        timeout: Some(431999),
        mark: Some(0x10),
        zone: None,
        tcp: Some(TcpInfo {
            state: TcpState::ESTABLISHED,
            wscale_orig: Some(7),
            wscale_reply: Some(7),
            flags_orig: Some(TcpFlags {
                flags: 0x23,
                mask: 0x23,
            }),
            flags_reply: Some(TcpFlags {
                flags: 0x23,
                mask: 0x23,
            }),
        }),
        id: None,
    }
}

/// Timeout, mark and TCP info; the flags' mask as given (the kernel reports the
/// entry's own; requests send a full mask).
fn tail_bytes(mask: u8) -> Vec<u8> {
    cat(&[
        &h(8, 7),
        &431999u32.to_be_bytes(),
        &h(8, 8),
        &0x10u32.to_be_bytes(),
        // CTA_PROTOINFO { CTA_PROTOINFO_TCP { state, wscale x2, flags x2 } }
        &h(48, 0x8004),
        &h(44, 0x8001),
        &h(5, 1),
        &[3, 0, 0, 0],
        &h(5, 2),
        &[7, 0, 0, 0],
        &h(5, 3),
        &[7, 0, 0, 0],
        &h(6, 4),
        &[0x23, mask, 0, 0],
        &h(6, 5),
        &[0x23, mask, 0, 0],
    ])
}

#[test]
fn encode_attrs_matches_hand_built_bytes() {
    let expected = cat(&[
        &tuple_bytes(1, CLIENT, 40000, VIP, 80),
        &tuple_bytes(2, SRV, 80, SNAT, 20001),
        &h(8, 3),
        &0x1beu32.to_be_bytes(),
        &tail_bytes(0xff),
    ]);
    assert_eq!(balanced().encode_attrs(), expected);
}

#[test]
fn encode_create_sends_unnatted_reply_and_nat_ranges() {
    let nat = |ty: u16, addr: [u8; 4], port: u16| {
        cat(&[
            &h(40, ty | 0x8000),
            &h(8, 1),
            &addr,
            &h(8, 2),
            &addr,
            &h(20, 0x8003),
            &h(6, 1),
            &port.to_be_bytes(),
            &[0, 0],
            &h(6, 2),
            &port.to_be_bytes(),
            &[0, 0],
        ])
    };
    let expected = cat(&[
        &tuple_bytes(1, CLIENT, 40000, VIP, 80),
        &tuple_bytes(2, VIP, 80, CLIENT, 40000),
        &nat(13, SRV, 80),
        &nat(6, SNAT, 20001),
        // As dumped: CONFIRMED is required, NAT bits are ignored by the kernel.
        &h(8, 3),
        &0x1beu32.to_be_bytes(),
        &tail_bytes(0xff),
    ]);
    assert_eq!(balanced().encode_create(), expected);
}

#[test]
fn decode_reads_a_kernel_style_message_and_skips_unknown_attributes() {
    let bytes = cat(&[
        &tuple_bytes(1, CLIENT, 40000, VIP, 80),
        &tuple_bytes(2, SRV, 80, SNAT, 20001),
        &h(8, 3),
        &0x1beu32.to_be_bytes(),
        &tail_bytes(0x23),
        // CTA_USE (unknown to the decoder) and CTA_ID.
        &h(8, 11),
        &1u32.to_be_bytes(),
        &h(8, 12),
        &0xdeadbeefu32.to_be_bytes(),
    ]);
    let e = Entry::decode_attrs(&bytes).unwrap();
    let mut want = balanced();
    want.id = Some(0xdeadbeef);
    assert_eq!(e, want);
    assert_eq!(e.snat(), Some((ip("198.18.1.100"), Some(20001))));
    assert_eq!(e.dnat(), Some((ip("198.18.1.21"), Some(80))));
}

/// An entry in a flowtable comes without timeout and TCP state (6.1's dump): it is
/// read as established, liberal both ways, for a day, so that a peer can write it.
#[test]
fn an_offloaded_entry_is_read_as_established_and_liberal() {
    let mut e = balanced();
    e.status = Status(e.status.0 | Status::OFFLOAD);
    e.timeout = None;
    e.tcp = None;
    e.mark = None;
    let back = Entry::decode_attrs(&e.encode_attrs()).unwrap();
    assert_eq!(back.timeout, Some(crate::OFFLOADED_TIMEOUT));
    let tcp = back.tcp.unwrap();
    assert_eq!(tcp.state, TcpState::ESTABLISHED);
    assert_eq!(tcp.flags_orig.map(|f| f.flags), Some(TcpFlags::BE_LIBERAL));
    assert_eq!(tcp.flags_reply.map(|f| f.flags), Some(TcpFlags::BE_LIBERAL));
    // What the kernel does report stays as it is.
    let mut kept = balanced();
    kept.status = Status(kept.status.0 | Status::OFFLOAD);
    let back = Entry::decode_attrs(&kept.encode_attrs()).unwrap();
    assert_eq!(back.timeout, kept.timeout);
    assert_eq!(back.tcp.map(|t| t.wscale_orig), Some(Some(7)));
    // Not offloaded: nothing is made up.
    let mut plain = balanced();
    plain.timeout = None;
    plain.tcp = None;
    let back = Entry::decode_attrs(&plain.encode_attrs()).unwrap();
    assert_eq!((back.timeout, back.tcp), (None, None));
}

#[test]
fn decode_rejects_truncation_and_missing_reply() {
    let mut bytes = tuple_bytes(1, CLIENT, 40000, VIP, 80);
    assert!(Entry::decode_attrs(&bytes).is_err(), "no reply tuple");
    bytes.extend_from_slice(&h(60, 0x8002));
    bytes.extend_from_slice(&[0; 8]);
    assert!(
        Entry::decode_attrs(&bytes).is_err(),
        "length beyond the buffer"
    );
}

#[test]
fn ipv6_and_icmp_tuples_round_trip() {
    let icmp = Tuple {
        src: ip("2001:db8:0:a::10"),
        dst: ip("2001:db8:0:a::100"),
        proto: 58,
        l4: L4::Icmp {
            id: 77,
            kind: 128,
            code: 0,
        },
    };
    let e = Entry {
        orig: icmp,
        reply: icmp.inverted(),
        status: Status(0),
        timeout: Some(30),
        mark: None,
        zone: Some(3),
        tcp: None,
        id: None,
    };
    assert_eq!(
        e.reply.l4,
        L4::Icmp {
            id: 77,
            kind: 129,
            code: 0
        }
    );
    assert_eq!(Entry::decode_attrs(&e.encode_attrs()).unwrap(), e);
}

#[test]
fn message_header_is_nlmsghdr_plus_nfgenmsg() {
    let mut out = Vec::new();
    push_message(&mut out, 0, 0x605, 9, 2, &[1, 2, 3]);
    let mut want = 23u32.to_ne_bytes().to_vec();
    want.extend_from_slice(&0x0100u16.to_ne_bytes());
    want.extend_from_slice(&0x605u16.to_ne_bytes());
    want.extend_from_slice(&9u32.to_ne_bytes());
    want.extend_from_slice(&0u32.to_ne_bytes());
    want.extend_from_slice(&[2, 0, 0, 0, 1, 2, 3, 0]);
    assert_eq!(out, want);
}

#[test]
fn wire_round_trip_and_version_check() {
    let ev = Event {
        kind: EventKind::Update,
        entry: balanced(),
    };
    let line = encode_line(&ev);
    assert!(line.starts_with("{\"v\":1,\"kind\":\"update\""), "{line}");
    assert!(line.ends_with('\n'));
    assert_eq!(decode_line(&line).unwrap(), ev);
    let v2 = line.replacen("\"v\":1", "\"v\":2", 1);
    assert!(matches!(decode_line(&v2), Err(WireError::Version(2))));
    assert!(matches!(decode_line("{\"v\":1}"), Err(WireError::Json(_))));
}

#[test]
fn filter_matches_any_criterion() {
    let e = balanced();
    assert!(FlowFilter::all().matches(&e));
    let by_vip = FlowFilter {
        orig_dst: vec![ip("198.18.0.100")],
        ..FlowFilter::default()
    };
    assert!(by_vip.matches(&e));
    let by_snat = FlowFilter {
        reply_dst: vec![ip("198.18.1.100")],
        ..FlowFilter::default()
    };
    assert!(by_snat.matches(&e));
    let by_mark = FlowFilter {
        mark: Some((0x10, 0xf0)),
        ..FlowFilter::default()
    };
    assert!(by_mark.matches(&e));
    let other = FlowFilter {
        mark: Some((0x20, 0xf0)),
        orig_dst: vec![ip("198.18.0.101")],
        reply_dst: vec![ip("198.18.1.101")],
    };
    assert!(!other.matches(&e));
}

#[test]
fn reply_before_nat_keeps_what_no_nat_attribute_maps() {
    // nft DNAT + SNAT: both sides come from the NAT attributes.
    assert_eq!(
        balanced().reply_before_nat(),
        Tuple::tcp(ip("198.18.0.100"), 80, ip("198.18.0.10"), 40000)
    );
    // IPVS NAT forwarding + nft SNAT: IPVS altered the reply's source (the real
    // server) without a DST_NAT bit; only the destination is the SNAT's.
    let mut ipvs = balanced();
    ipvs.status = Status(ipvs.status.0 & !(Status::DST_NAT | Status::DST_NAT_DONE));
    assert_eq!(ipvs.dnat(), None);
    assert_eq!(
        ipvs.reply_before_nat(),
        Tuple::tcp(ip("198.18.1.21"), 80, ip("198.18.0.10"), 40000)
    );
    // No NAT at all: the reply as reported.
    ipvs.status = Status(Status::SEEN_REPLY | Status::ASSURED | Status::CONFIRMED);
    assert_eq!(ipvs.reply_before_nat(), ipvs.reply);
}
