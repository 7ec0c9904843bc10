//! Arbitrary bytes into every decoder: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrrp::frame::{self, LinkType};
use vrrp::packet::{self, Family, IpContext};
use vrrp::pcap::Capture;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the IP context for the bare-message decoder.
    let (selector, rest) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let ip = match selector % 4 {
        0 => IpContext::new([198, 18, 0, 1].into(), [224, 0, 0, 18].into()),
        1 => IpContext::new([198, 18, 0, 1].into(), [198, 18, 0, 2].into()),
        2 => IpContext::new(
            "fe80::1"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST)
                .into(),
            "ff02::12"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST)
                .into(),
        ),
        _ => IpContext {
            ttl: selector,
            ..IpContext::new([198, 18, 0, 1].into(), [224, 0, 0, 18].into())
        },
    };
    let _ = packet::decode(rest, &ip);
    let _ = packet::decode_unverified(rest, Family::Ipv4);
    let _ = packet::decode_unverified(rest, Family::Ipv6);
    let _ = Family::infer_from_message(rest);
    let _ = frame::ip_protocol(rest);
    for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ] {
        let _ = frame::decode_frame(link, rest);
    }
    if let Ok(capture) = Capture::parse(data) {
        for record in capture.records().take(64) {
            let Ok(record) = record else { break };
            let _ = frame::decode_frame(capture.link_type, record.data);
        }
    }
});
