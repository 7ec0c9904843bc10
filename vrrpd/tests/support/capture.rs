//! Packet captures with tcpdump inside a lab host, read back with the vrrp
//! crate's pcap reader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use integration::{Host, Process};
use vrrp::frame::{self, LinkType};
use vrrp::packet::Received;
use vrrp::pcap::Capture;

use super::wait_for;

/// A running `tcpdump -w` in one host.
pub struct Tcpdump {
    process: Process,
    path: PathBuf,
}

impl Tcpdump {
    /// Starts capturing whole frames on `iface` of `host` matching `filter`
    /// into `dir`/`name`.pcap; returns once tcpdump is listening.
    pub fn start(host: &Host, iface: &str, filter: &str, dir: &Path, name: &str) -> Tcpdump {
        let path = dir.join(format!("{name}.pcap"));
        let process = host
            .spawn(
                "tcpdump",
                [
                    "-i",
                    iface,
                    "-n",
                    "-s",
                    "0",
                    "-U",
                    "-w",
                    path.to_str().unwrap(),
                    filter,
                ],
            )
            .unwrap();
        wait_for("tcpdump listening", Duration::from_secs(10), || {
            process.stderr().contains("listening on")
        });
        Tcpdump { process, path }
    }

    /// The frames written so far (tcpdump -U writes each at once).
    pub fn frames_so_far(&self) -> Vec<Vec<u8>> {
        let data = std::fs::read(&self.path).unwrap_or_default();
        let Ok(capture) = Capture::parse(&data) else {
            return Vec::new();
        };
        // A record being written may be cut short: keep what reads whole.
        capture
            .records()
            .map_while(Result::ok)
            .map(|r| r.data.to_vec())
            .collect()
    }

    /// Stops tcpdump and returns the frames it wrote.
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.process.signal(libc::SIGINT).unwrap();
        let mut process = self.process;
        process.wait_timeout(Duration::from_secs(10)).unwrap();
        let data = std::fs::read(&self.path).unwrap();
        let capture = Capture::parse(&data).unwrap();
        assert_eq!(capture.link_type, LinkType::Ethernet);
        capture
            .records()
            .map(|r| r.unwrap().data.to_vec())
            .collect()
    }
}

/// The frames that decode as valid VRRP adverts (checksum and TTL checked),
/// with their source MAC.
pub fn adverts(frames: &[Vec<u8>]) -> Vec<([u8; 6], Received)> {
    frames
        .iter()
        .filter_map(|f| {
            let received = frame::decode_frame(LinkType::Ethernet, f).ok()?;
            let mac: [u8; 6] = f.get(6..12)?.try_into().ok()?;
            Some((mac, received))
        })
        .collect()
}

/// An unsolicited neighbour advertisement seen in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourAdvert {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// IPv6 destination.
    pub dst: std::net::Ipv6Addr,
    /// Target address.
    pub target: std::net::Ipv6Addr,
    /// Router, Solicited, Override flags.
    pub router: bool,
    /// Solicited flag.
    pub solicited: bool,
    /// Override flag.
    pub override_flag: bool,
}

/// The ICMPv6 neighbour advertisements (type 136) among `frames`.
pub fn neighbour_adverts(frames: &[Vec<u8>]) -> Vec<NeighbourAdvert> {
    frames
        .iter()
        .filter_map(|f| {
            // Ethernet II without tags, IPv6, next header ICMPv6, type 136.
            if f.get(12..14)? != [0x86, 0xdd] || *f.get(20)? != 58 || *f.get(54)? != 136 {
                return None;
            }
            let dst: [u8; 16] = f.get(38..54)?.try_into().ok()?;
            let flags = *f.get(58)?;
            let target: [u8; 16] = f.get(62..78)?.try_into().ok()?;
            Some(NeighbourAdvert {
                src_mac: f.get(6..12)?.try_into().ok()?,
                dst: dst.into(),
                target: target.into(),
                router: flags & 0x80 != 0,
                solicited: flags & 0x40 != 0,
                override_flag: flags & 0x20 != 0,
            })
        })
        .collect()
}

/// Parses "02:00:00:00:02:00".
pub fn mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}
