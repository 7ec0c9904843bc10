//! Properties of the codec: what encodes decodes back to itself, in every
//! version, family and checksum form; damaged or arbitrary bytes give an
//! error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vrrp::checksum::{self, ChecksumForm};
use vrrp::frame::{self, LinkType};
use vrrp::packet::{self, Advertisement, Auth, Family, IpContext, Version};

fn ipv4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn ipv6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
}

fn address(family: Family) -> BoxedStrategy<IpAddr> {
    match family {
        Family::Ipv4 => ipv4().boxed(),
        Family::Ipv6 => ipv6().boxed(),
    }
}

/// The IP layer: a source, and the multicast group or a unicast peer.
fn context(family: Family) -> impl Strategy<Value = IpContext> {
    (
        address(family),
        prop_oneof![Just(None), address(family).prop_map(Some)],
    )
        .prop_map(move |(src, dst)| IpContext::new(src, dst.unwrap_or(family.vrrp_group())))
}

fn form() -> impl Strategy<Value = ChecksumForm> {
    prop_oneof![
        Just(ChecksumForm::PseudoHeader),
        Just(ChecksumForm::MessageOnly),
        Just(ChecksumForm::OldUnicast),
    ]
}

/// A valid advertisement together with the IP layer it travels in.
fn advert_in_context() -> impl Strategy<Value = (Advertisement, IpContext)> {
    let v2 = (
        1u8..=255,
        any::<u8>(),
        1u16..=255,
        prop::collection::vec(ipv4(), 1..=20),
        prop_oneof![
            Just(Auth::None),
            any::<[u8; 8]>().prop_map(Auth::SimplePassword)
        ],
        context(Family::Ipv4),
    )
        .prop_map(|(vrid, priority, seconds, addresses, auth, ip)| {
            let advert = Advertisement {
                version: Version::V2,
                vrid,
                priority,
                interval_cs: seconds * 100,
                addresses,
                auth,
            };
            (advert, ip)
        });
    let v3 = prop_oneof![Just(Family::Ipv4), Just(Family::Ipv6)].prop_flat_map(|family| {
        (
            1u8..=255,
            any::<u8>(),
            1u16..=4095,
            prop::collection::vec(address(family), 1..=20),
            context(family),
        )
            .prop_map(|(vrid, priority, interval_cs, addresses, ip)| {
                let advert = Advertisement {
                    version: Version::V3,
                    vrid,
                    priority,
                    interval_cs,
                    addresses,
                    auth: Auth::None,
                };
                (advert, ip)
            })
    });
    prop_oneof![v2, v3]
}

/// The only form the RFCs allow outside VRRPv3 over IPv4.
fn effective_form(advert: &Advertisement, ip: &IpContext, asked: ChecksumForm) -> ChecksumForm {
    match (advert.version, ip.family()) {
        (Version::V2, _) => ChecksumForm::MessageOnly,
        (Version::V3, Some(Family::Ipv6)) => ChecksumForm::PseudoHeader,
        _ => asked,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity((advert, ip) in advert_in_context(), asked in form()) {
        let wire = packet::encode(&advert, &ip, asked).unwrap();
        let got = packet::decode(&wire, &ip).unwrap();
        prop_assert_eq!(&got.advert, &advert);
        prop_assert_eq!(got.ip, ip);
        prop_assert_eq!(got.checksum, u16::from_be_bytes([wire[6], wire[7]]));
        // The form asked for verifies; the one reported verifies too (two
        // forms can coincide, e.g. old-unicast and pseudo-header to 224.0.0.18).
        let form = effective_form(&advert, &ip, asked);
        prop_assert!(checksum::verify(&wire, form, ip.src, ip.dst));
        prop_assert!(checksum::verify(&wire, got.checksum_form, ip.src, ip.dst));
        if form == ChecksumForm::PseudoHeader || advert.version == Version::V2 {
            // Tried first, so always the one reported.
            prop_assert_eq!(got.checksum_form, form);
        }
        // The bare-message decoder agrees, and the count and length alone
        // tell the family.
        let family = ip.family().unwrap();
        prop_assert_eq!(Family::infer_from_message(&wire), Some(family));
        let (bare, sum) = packet::decode_unverified(&wire, family).unwrap();
        prop_assert_eq!(bare, advert);
        prop_assert_eq!(sum, got.checksum);
    }

    #[test]
    fn ip_and_ethernet_round_trip_with_padding(
        (advert, ip) in advert_in_context(),
        asked in form(),
        padding in 0usize..64,
    ) {
        let packet = frame::encode_ip(&advert, &ip, asked).unwrap();
        let mut eth = vec![0x01, 0x00, 0x5e, 0, 0, 0x12, 0x02, 0, 0, 0, 1, 0];
        eth.extend_from_slice(match ip.family() {
            Some(Family::Ipv4) => &[0x08, 0x00],
            _ => &[0x86, 0xdd],
        });
        eth.extend_from_slice(&packet);
        eth.resize(eth.len() + padding, 0);
        let got = frame::decode_frame(LinkType::Ethernet, &eth).unwrap();
        prop_assert_eq!(&got.advert, &advert);
        prop_assert_eq!(got.ip, ip);
    }

    #[test]
    fn any_single_bit_flip_is_refused(
        (advert, ip) in advert_in_context().prop_filter(
            "one checksum form only",
            |(a, ip)| a.version == Version::V2 || ip.family() == Some(Family::Ipv6),
        ),
        bit in any::<prop::sample::Index>(),
    ) {
        let mut wire = packet::encode(&advert, &ip, ChecksumForm::default()).unwrap();
        let bit = bit.index(wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(packet::decode(&wire, &ip).is_err(), "bit {} flipped and still accepted", bit);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), ttl in any::<u8>()) {
        for ip in [
            IpContext { ttl, ..IpContext::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), Family::Ipv4.vrrp_group()) },
            IpContext::new("2001:db8::1".parse().unwrap(), Family::Ipv6.vrrp_group()),
        ] {
            let _ = packet::decode(&bytes, &ip);
        }
        let _ = packet::decode_unverified(&bytes, Family::Ipv4);
        let _ = packet::decode_unverified(&bytes, Family::Ipv6);
        let _ = frame::ip_protocol(&bytes);
        for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ] {
            let _ = frame::decode_frame(link, &bytes);
        }
        let _ = vrrp::pcap::Capture::parse(&bytes).map(|c| c.records().count());
    }

    #[test]
    fn near_valid_bytes_never_panic(
        (advert, ip) in advert_in_context(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        // Start from a valid IP packet so the fuzzing reaches the deep checks.
        let mut packet = frame::encode_ip(&advert, &ip, ChecksumForm::default()).unwrap();
        for (at, byte) in edits {
            let i = at.index(packet.len());
            packet[i] = byte;
        }
        let len = cut.index(packet.len() + 1);
        let _ = frame::decode_ip(&packet[..len]);
        let header_len = match ip.family() {
            Some(Family::Ipv4) => 20,
            _ => 40,
        };
        let _ = packet::decode(&packet[header_len..len.max(header_len)], &ip);
    }
}

#[test]
fn largest_adverts_round_trip() {
    // 255 IPv6 addresses: 4088 bytes, the most a v3 message can carry.
    let addresses: Vec<IpAddr> = (0..255u16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
        .collect();
    let advert = Advertisement {
        version: Version::V3,
        vrid: 255,
        priority: 255,
        interval_cs: 4095,
        addresses,
        auth: Auth::None,
    };
    let ip = IpContext::new("fe80::1".parse().unwrap(), Family::Ipv6.vrrp_group());
    let wire = packet::encode(&advert, &ip, ChecksumForm::default()).unwrap();
    assert_eq!(wire.len(), 8 + 255 * 16);
    assert_eq!(packet::decode(&wire, &ip).unwrap().advert, advert);
    let mut too_many = advert.clone();
    too_many.addresses.push("2001:db8::ffff".parse().unwrap());
    assert!(packet::encode(&too_many, &ip, ChecksumForm::default()).is_err());
}
