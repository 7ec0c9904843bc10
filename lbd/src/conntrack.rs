//! SNAT port usage from the connection-tracking table.
//!
//! The kernel lists its table in `/proc/net/nf_conntrack` (of the reading thread's
//! network namespace) when nf_conntrack is built with procfs support, as it is here;
//! the reply direction of a source-NATed connection goes *to* the SNAT address and
//! port, so the ports in use for an address are the distinct (protocol, reply
//! destination port) pairs whose reply destination is that address.
//!
//! Reading the file walks the whole table: the cost grows with the number of
//! tracked connections (about 1 s per million entries).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;

/// Where the kernel lists tracked connections.
pub const PROC_CONNTRACK: &str = "/proc/net/nf_conntrack";

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

/// Reads the table and counts, for each `(address, ports available)`.
pub fn read_usage(capacity: &[(IpAddr, u32)]) -> io::Result<Vec<SnatUsage>> {
    if capacity.is_empty() {
        return Ok(Vec::new());
    }
    // Line by line: the table's text is ~250 bytes an entry, tens of MB when health
    // checks alone keep 100,000 entries in CLOSE; never hold it whole.
    let file = match std::fs::File::open(PROC_CONNTRACK) {
        Ok(f) => f,
        // No conntrack module yet: nothing is tracked, so no port is in use.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(usage("", capacity)),
        Err(e) => return Err(e),
    };
    let mut reader = io::BufReader::with_capacity(64 * 1024, file);
    let mut counter = UsageCounter::new(capacity);
    let mut line = String::new();
    loop {
        line.clear();
        if io::BufRead::read_line(&mut reader, &mut line)? == 0 {
            break;
        }
        counter.line(&line);
    }
    Ok(counter.finish(capacity))
}

/// Counts from the text of `/proc/net/nf_conntrack`.
pub fn usage(text: &str, capacity: &[(IpAddr, u32)]) -> Vec<SnatUsage> {
    let mut counter = UsageCounter::new(capacity);
    for line in text.lines() {
        counter.line(line);
    }
    counter.finish(capacity)
}

/// The distinct reply-destination ports per wanted address, a line at a time.
struct UsageCounter {
    wanted: BTreeSet<IpAddr>,
    ports: BTreeMap<IpAddr, BTreeSet<(String, u16)>>,
}

impl UsageCounter {
    fn new(capacity: &[(IpAddr, u32)]) -> UsageCounter {
        UsageCounter {
            wanted: capacity.iter().map(|(a, _)| *a).collect(),
            ports: BTreeMap::new(),
        }
    }

    fn line(&mut self, line: &str) {
        let (wanted, ports) = (&self.wanted, &mut self.ports);
        let Some((proto, addr, port)) = reply_destination(line.trim_end()) else {
            return;
        };
        if wanted.contains(&addr) {
            ports
                .entry(addr)
                .or_default()
                .insert((proto.to_owned(), port));
        }
    }

    fn finish(self, capacity: &[(IpAddr, u32)]) -> Vec<SnatUsage> {
        capacity
            .iter()
            .map(|&(address, ports_available)| SnatUsage {
                address,
                ports_in_use: self.ports.get(&address).map_or(0, |s| s.len() as u64),
                ports_available,
            })
            .collect()
    }
}

/// (protocol name, reply destination address, reply destination port) of one line:
/// `ipv4 2 tcp 6 117 TIME_WAIT src= dst= sport= dport= src= dst= sport= dport= ...`
/// (the second `dst=`/`dport=` pair is the reply direction). Lines without ports
/// (ICMP) yield nothing.
fn reply_destination(line: &str) -> Option<(&str, IpAddr, u16)> {
    let mut fields = line.split_whitespace();
    let proto = fields.nth(2)?;
    let mut dsts = 0;
    let mut dports = 0;
    let mut addr = None;
    let mut port = None;
    for f in fields {
        if let Some(v) = f.strip_prefix("dst=") {
            dsts += 1;
            if dsts == 2 {
                addr = v.parse().ok();
            }
        } else if let Some(v) = f.strip_prefix("dport=") {
            dports += 1;
            if dports == 2 {
                port = v.parse().ok();
            }
        }
    }
    Some((proto, addr?, port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ipv4     2 tcp      6 431999 ESTABLISHED src=198.18.0.10 dst=198.18.0.100 sport=40001 dport=80 src=198.18.1.21 dst=198.18.1.100 sport=80 dport=20000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=198.18.0.10 dst=198.18.0.100 sport=40002 dport=80 src=198.18.1.22 dst=198.18.1.100 sport=80 dport=20000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 117 TIME_WAIT src=198.18.0.10 dst=198.18.0.100 sport=40003 dport=80 src=198.18.1.21 dst=198.18.1.101 sport=80 dport=20001 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=198.18.0.10 dst=198.18.0.100 sport=5353 dport=53 [UNREPLIED] src=198.18.1.21 dst=198.18.1.100 sport=53 dport=20000 mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=198.18.0.10 dst=198.18.0.100 type=8 code=0 id=7 src=198.18.1.21 dst=198.18.1.100 type=0 code=0 id=7 mark=0 zone=0 use=2
ipv4     2 tcp      6 100 ESTABLISHED src=198.18.1.11 dst=198.18.1.21 sport=50000 dport=80 src=198.18.1.21 dst=198.18.1.11 sport=80 dport=50000 [ASSURED] mark=0 zone=0 use=2
";

    #[test]
    fn counts_distinct_reply_ports_per_snat_address() {
        let a: IpAddr = "198.18.1.100".parse().unwrap();
        let b: IpAddr = "198.18.1.101".parse().unwrap();
        let c: IpAddr = "198.18.1.102".parse().unwrap();
        let u = usage(TABLE, &[(a, 4), (b, 4), (c, 4)]);
        // a: tcp 20000 (twice, two servers: one port) and udp 20000; icmp has no port.
        assert_eq!(u[0].ports_in_use, 2);
        assert_eq!(u[1].ports_in_use, 1);
        assert_eq!(u[2].ports_in_use, 0);
        assert_eq!(u[0].utilization(), 0.5);
        assert_eq!(u[1].utilization(), 0.25);
    }

    #[test]
    fn ipv6_lines_and_garbage() {
        let text = "ipv6     10 tcp      6 50 ESTABLISHED src=2001:db8:0:a::10 dst=2001:db8:0:a::100 sport=1 dport=80 src=2001:db8:0:b::21 dst=2001:db8:0:b::100 sport=80 dport=30000 [ASSURED] use=1\nnonsense\n\n";
        let a: IpAddr = "2001:db8:0:b::100".parse().unwrap();
        assert_eq!(usage(text, &[(a, 0)])[0].ports_in_use, 1);
        assert_eq!(usage(text, &[(a, 0)])[0].utilization(), 0.0);
    }
}
