//! Whatever decodes must encode back and decode to the same advertisement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrrp::frame;
use vrrp::packet::{self, IpContext};

fuzz_target!(|data: &[u8]| {
    let (selector, rest) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let ip = match selector % 3 {
        0 => IpContext::new([198, 18, 0, 1].into(), [224, 0, 0, 18].into()),
        1 => IpContext::new([198, 18, 0, 1].into(), [198, 18, 0, 2].into()),
        _ => IpContext::new(
            std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(),
            std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12).into(),
        ),
    };
    // Bare message in a fixed context.
    if let Ok(first) = packet::decode(rest, &ip) {
        let wire = packet::encode(&first.advert, &ip, first.checksum_form)
            .expect("a decoded advert encodes");
        let second = packet::decode(&wire, &ip).expect("an encoded advert decodes");
        assert_eq!(first.advert, second.advert);
        assert_eq!(first.checksum_form, second.checksum_form);
    }
    // Whole IP packet, context taken from its header.
    if let Ok(first) = frame::decode_ip(rest) {
        let packet =
            frame::encode_ip(&first.advert, &first.ip, first.checksum_form).expect("encodes");
        let second = frame::decode_ip(&packet).expect("decodes");
        assert_eq!(first.advert, second.advert);
        assert_eq!(first.ip, second.ip);
    }
});
