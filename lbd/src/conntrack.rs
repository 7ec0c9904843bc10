//! SNAT port usage from the connection-tracking table.
//!
//! The table is dumped over ctnetlink (through `ctsync`, the suite's one conntrack
//! client) in the calling thread's network namespace. The reply direction of a
//! source-NATed connection goes *to* the SNAT address and port, so the ports in use
//! for an address are the distinct (protocol, reply destination port) pairs whose
//! reply destination is that address.
//!
//! A dump walks the whole table: the cost grows with the number of tracked
//! connections; only the entries whose reply goes to a wanted address are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ctsync::{Conntrack, Entry, FlowFilter};

/// Ports in use per SNAT address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatUsage {
    /// The SNAT address.
    pub address: IpAddr,
    /// Distinct (protocol, port) pairs of connections NATed to it.
    pub ports_in_use: u64,
    /// Ports it may use (from the SNAT rules).
    pub ports_available: u32,
}

impl SnatUsage {
    /// In use / available (0 when nothing is available).
    pub fn utilization(&self) -> f64 {
        if self.ports_available == 0 {
            0.0
        } else {
            self.ports_in_use as f64 / f64::from(self.ports_available)
        }
    }
}

/// Dumps the table and counts, for each `(address, ports available)`.
pub fn read_usage(capacity: &[(IpAddr, u32)]) -> Result<Vec<SnatUsage>, ctsync::Error> {
    if capacity.is_empty() {
        return Ok(Vec::new());
    }
    let filter = FlowFilter {
        reply_dst: capacity.iter().map(|(a, _)| *a).collect(),
        ..FlowFilter::default()
    };
    let entries = Conntrack::open()?.dump(&filter)?;
    Ok(usage(&entries, capacity))
}

/// Protocols whose source NAT allocates a port (those the kernel's table lists with
/// ports): TCP, UDP, DCCP, SCTP, UDP-Lite. GRE keys and ICMP ids are not counted.
const PORTED: [u8; 5] = [6, 17, 33, 132, 136];

/// Counts the distinct (protocol, reply destination port) pairs per wanted address.
pub fn usage<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    capacity: &[(IpAddr, u32)],
) -> Vec<SnatUsage> {
    let wanted: BTreeSet<IpAddr> = capacity.iter().map(|(a, _)| *a).collect();
    let mut ports: BTreeMap<IpAddr, BTreeSet<(u8, u16)>> = BTreeMap::new();
    for e in entries {
        let reply = &e.reply;
        let Some(port) = reply.dst_port() else {
            continue;
        };
        if PORTED.contains(&reply.proto) && wanted.contains(&reply.dst) {
            ports
                .entry(reply.dst)
                .or_default()
                .insert((reply.proto, port));
        }
    }
    capacity
        .iter()
        .map(|&(address, ports_available)| SnatUsage {
            address,
            ports_in_use: ports.get(&address).map_or(0, |s| s.len() as u64),
            ports_available,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use ctsync::{Status, Tuple, L4};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An entry from `client` to `vip`, NATed to `server` and `snat`.
    fn entry(proto: u8, l4: (u16, u16), vip: &str, server: &str, snat: &str, port: u16) -> Entry {
        let ported = |src, dst| match proto {
            1 | 58 => L4::Icmp {
                id: src,
                kind: 8,
                code: 0,
            },
            47 => L4::None,
            _ => L4::Ports { src, dst },
        };
        let orig = Tuple {
            src: ip("198.18.0.10"),
            dst: ip(vip),
            proto,
            l4: ported(l4.0, l4.1),
        };
        let reply = Tuple {
            src: ip(server),
            dst: ip(snat),
            proto,
            l4: ported(l4.1, port),
        };
        Entry {
            orig,
            reply,
            status: Status(Status::ASSURED | Status::SEEN_REPLY),
            timeout: Some(100),
            mark: None,
            zone: None,
            tcp: None,
            id: None,
        }
    }

    #[test]
    fn counts_distinct_reply_ports_per_snat_address() {
        let (vip, s1, s2) = ("198.18.0.100", "198.18.1.21", "198.18.1.22");
        let table = [
            entry(6, (40001, 80), vip, s1, "198.18.1.100", 20000),
            entry(6, (40002, 80), vip, s2, "198.18.1.100", 20000),
            entry(6, (40003, 80), vip, s1, "198.18.1.101", 20001),
            entry(17, (5353, 53), vip, s1, "198.18.1.100", 20000),
            entry(1, (7, 0), vip, s1, "198.18.1.100", 0),
            entry(47, (0, 0), vip, s1, "198.18.1.100", 0),
            // Not NATed: the reply goes to the client.
            entry(
                6,
                (50000, 80),
                "198.18.1.21",
                "198.18.1.21",
                "198.18.1.11",
                50000,
            ),
        ];
        let (a, b, c) = (ip("198.18.1.100"), ip("198.18.1.101"), ip("198.18.1.102"));
        let u = usage(&table, &[(a, 4), (b, 4), (c, 4)]);
        // a: tcp 20000 (twice, two servers: one port) and udp 20000; icmp has no port.
        assert_eq!(u[0].ports_in_use, 2);
        assert_eq!(u[1].ports_in_use, 1);
        assert_eq!(u[2].ports_in_use, 0);
        assert_eq!(u[0].utilization(), 0.5);
        assert_eq!(u[1].utilization(), 0.25);
    }

    #[test]
    fn ipv6_entries_and_nothing_available() {
        let e = entry(
            6,
            (1, 80),
            "2001:db8:0:a::100",
            "2001:db8:0:b::21",
            "2001:db8:0:b::100",
            30000,
        );
        let a = ip("2001:db8:0:b::100");
        assert_eq!(usage([&e], &[(a, 0)])[0].ports_in_use, 1);
        assert_eq!(usage([&e], &[(a, 0)])[0].utilization(), 0.0);
    }

    /// What the kernel's text listing says (`/proc/net/nf_conntrack`, the source this
    /// module read before ctnetlink): distinct (protocol, second `dport=`) per second
    /// `dst=`.
    fn usage_of_text(text: &str, address: IpAddr) -> u64 {
        let mut seen = BTreeSet::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let Some(proto) = fields.nth(2) else { continue };
            let dsts: Vec<&str> = line
                .split_whitespace()
                .filter_map(|f| f.strip_prefix("dst="))
                .collect();
            let dports: Vec<&str> = line
                .split_whitespace()
                .filter_map(|f| f.strip_prefix("dport="))
                .collect();
            if let (Some(d), Some(p)) = (dsts.get(1), dports.get(1)) {
                if d.parse::<IpAddr>().ok() == Some(address) {
                    seen.insert((proto.to_owned(), (*p).to_owned()));
                }
            }
        }
        seen.len() as u64
    }

    /// Real balanced connections (TCP, UDP) through lb1's DNAT + pool SNAT, in
    /// a lab: the ctnetlink count equals the count from the kernel's text listing.
    #[test]
    fn ctnetlink_counts_what_the_text_listing_shows() {
        if !integration::have_root("ctnetlink_counts_what_the_text_listing_shows") {
            return;
        }
        const RULES: &str = "table ip lbd_conntrack_test {
  chain pre { type nat hook prerouting priority -100; ip daddr 198.18.0.100 meta l4proto { tcp, udp } th dport 80 dnat to 198.18.1.21:80; ip daddr 198.18.0.100 icmp type echo-request dnat to 198.18.1.21; }
  chain post { type nat hook postrouting priority 100; ip daddr 198.18.1.21 meta l4proto { tcp, udp } snat to 198.18.1.100-198.18.1.101:20000-29999 random; }
}
";
        let lab = integration::Lab::two_arm().unwrap();
        let (client, lb1, srv1) = (&lab["client"], &lab["lb1"], &lab["srv1"]);
        lb1.add_address("eth0", integration::Prefix::new(ip("198.18.0.100"), 24))
            .unwrap();
        for a in ["198.18.1.100", "198.18.1.101"] {
            lb1.add_address("eth1", integration::Prefix::new(ip(a), 24))
                .unwrap();
        }
        let path = std::env::temp_dir().join(format!("lbd-conntrack-{}.nft", lb1.netns()));
        std::fs::write(&path, RULES).unwrap();
        let loaded = lb1.exec_ok(&["nft", "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        loaded.unwrap();
        let listener = srv1.tcp_listen("198.18.1.21:80".parse().unwrap()).unwrap();
        let vip: SocketAddr = "198.18.0.100:80".parse().unwrap();
        let held: Vec<_> = (0..6)
            .map(|_| client.tcp_connect(vip, Duration::from_secs(10)).unwrap())
            .collect();
        let accepted: Vec<_> = (0..held.len())
            .map(|_| listener.accept().unwrap())
            .collect();
        let udp = client
            .run_in(|| std::net::UdpSocket::bind("198.18.0.10:0"))
            .unwrap()
            .unwrap();
        for _ in 0..3 {
            udp.send_to(b"x", vip).unwrap();
        }

        let capacity = [
            (ip("198.18.1.100"), 20_000),
            (ip("198.18.1.101"), 20_000),
            (ip("198.18.1.102"), 20_000),
        ];
        let (counted, text) = lb1
            .run_in(|| {
                (
                    read_usage(&capacity),
                    std::fs::read_to_string("/proc/thread-self/net/nf_conntrack"),
                )
            })
            .unwrap();
        let counted = counted.unwrap();
        let text = text.unwrap();
        let total: u64 = counted.iter().map(|u| u.ports_in_use).sum();
        // 6 TCP connections and one UDP flow, each with a port of the pool.
        assert_eq!(total, 7, "{counted:?}\n{text}");
        for u in &counted {
            assert_eq!(
                u.ports_in_use,
                usage_of_text(&text, u.address),
                "{}:\n{text}",
                u.address
            );
        }
        drop((held, accepted));
    }
}
