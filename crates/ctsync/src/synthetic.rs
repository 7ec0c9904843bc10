//! Connections of other clients, made up: conntrack entries written straight into a
//! node's kernel, so that sync sees the same events as from real flows without the
//! traffic. For tests and benchmarks that give a takeover a table of 100,000 or more
//! entries.

use std::net::{IpAddr, Ipv4Addr};

/// Entry `i` (unique for `i` below 64,000 x 64,000): an established TCP connection
/// from a client in 198.19.0.0/16 to `vip`:80, destination-NATed to `server`:80
/// (no source NAT, so any number of them can coexist).
pub fn background_entry(i: usize, vip: IpAddr, server: IpAddr) -> crate::Entry {
    let n = i % 64_000;
    let client = Ipv4Addr::new(198, 19, (n / 250) as u8, (n % 250) as u8 + 1);
    let sport = 1024 + (i / 64_000) as u16;
    let orig = crate::Tuple::tcp(client.into(), sport, vip, 80);
    crate::Entry {
        orig,
        reply: crate::Tuple::tcp(server, 80, client.into(), sport),
        status: crate::Status(
            crate::Status::ASSURED | crate::Status::SEEN_REPLY | crate::Status::DST_NAT,
        ),
        timeout: Some(3600),
        mark: None,
        zone: None,
        tcp: Some(crate::TcpInfo::in_state(crate::TcpState::ESTABLISHED)),
        id: None,
    }
}
