//! Gratuitous ARP and unsolicited neighbour advertisements for the VIPs of an
//! interface, sent as whole Ethernet frames through an AF_PACKET socket.
//!
//! The frames are byte for byte what keepalived 2.2.7 sends (shared vectors
//! s5/s6): a GARP is an ARP *request* whose target MAC is ff:ff:ff:ff:ff:ff, and
//! an unsolicited NA is sourced from the VIP itself with the Override flag.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NdpOptionTypes, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const ETHERNET_HEADER_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER_LEN: usize = 40;
/// NA header (24) plus one Target Link-Layer Address option (8).
const NA_LEN: usize = 32;
/// Length of a gratuitous ARP frame (unpadded, as on veth).
pub const GARP_FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;
/// Length of an unsolicited NA frame.
pub const NA_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN;
/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet address of ff02::1.
const ALL_NODES_MAC: MacAddr = MacAddr(0x33, 0x33, 0, 0, 0, 1);

/// A gratuitous ARP for `vip` from `mac`: an ARP request, broadcast, with sender
/// and target IP both the VIP and target MAC ff:ff:ff:ff:ff:ff.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mac = MacAddr::from(mac);
    let mut frame = [0u8; GARP_FRAME_LEN];
    let (eth_bytes, arp_bytes) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    // Sized by the constants above: these cannot be too short.
    let mut eth =
        MutableEthernetPacket::new(eth_bytes).expect("buffer sized for an Ethernet header");
    eth.set_destination(MacAddr::broadcast());
    eth.set_source(mac);
    eth.set_ethertype(EtherTypes::Arp);
    let mut arp = MutableArpPacket::new(arp_bytes).expect("buffer sized for an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(vip);
    arp.set_target_hw_addr(MacAddr::broadcast());
    arp.set_target_proto_addr(vip);
    frame
}

/// An unsolicited neighbour advertisement for `vip` from `mac`: src = the VIP,
/// dst ff02::1, hop limit 255, Override set, Router set when `router`, and a
/// Target Link-Layer Address option.
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr, router: bool) -> [u8; NA_FRAME_LEN] {
    let mac = MacAddr::from(mac);
    let mut frame = [0u8; NA_FRAME_LEN];
    let (eth_bytes, rest) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    let (ip_bytes, na_bytes) = rest.split_at_mut(IPV6_HEADER_LEN);
    let mut eth =
        MutableEthernetPacket::new(eth_bytes).expect("buffer sized for an Ethernet header");
    eth.set_destination(ALL_NODES_MAC);
    eth.set_source(mac);
    eth.set_ethertype(EtherTypes::Ipv6);
    let mut ip = MutableIpv6Packet::new(ip_bytes).expect("buffer sized for an IPv6 header");
    ip.set_version(6);
    ip.set_payload_length(NA_LEN as u16);
    ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
    ip.set_hop_limit(255);
    ip.set_source(vip);
    ip.set_destination(ALL_NODES);
    {
        let mut na =
            MutableNeighborAdvertPacket::new(&mut na_bytes[..]).expect("buffer sized for an NA");
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_icmpv6_code(Icmpv6Code(0));
        let mut flags = NeighborAdvertFlags::Override;
        if router {
            flags |= NeighborAdvertFlags::Router;
        }
        na.set_flags(flags);
        na.set_target_addr(vip);
    }
    // The option is written by hand: pnet's option setter needs an owned Vec.
    let option = &mut na_bytes[24..];
    option[0] = NdpOptionTypes::TargetLLAddr.0;
    option[1] = 1; // in units of 8 bytes
    option[2..8].copy_from_slice(&mac.octets());
    let checksum = {
        let icmp = Icmpv6Packet::new(na_bytes).expect("buffer sized for ICMPv6");
        icmpv6::checksum(&icmp, &vip, &ALL_NODES)
    };
    na_bytes[2..4].copy_from_slice(&checksum.to_be_bytes());
    frame
}

/// The announcement for `vip`: a GARP for IPv4, an unsolicited NA for IPv6.
pub fn announcement_frame(mac: [u8; 6], vip: IpAddr, router: bool) -> Vec<u8> {
    match vip {
        IpAddr::V4(v4) => garp_frame(mac, v4).to_vec(),
        IpAddr::V6(v6) => unsolicited_na_frame(mac, v6, router).to_vec(),
    }
}

/// A failure of an [`Announcer`]; each names the interface.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The process lacks the privilege for packet sockets.
    #[error("{iface}: sending gratuitous ARP / NA needs CAP_NET_RAW (run vrrpd as root or grant it the capability)")]
    NeedsCapNetRaw {
        /// The interface.
        iface: String,
    },
    /// socket(2) failed for another reason.
    #[error("{iface}: cannot open a packet socket: {error}")]
    Open {
        /// The interface.
        iface: String,
        /// The kernel's error.
        error: io::Error,
    },
    /// Binding to the interface failed (e.g. it is gone).
    #[error("{iface}: cannot bind a packet socket to interface index {ifindex}: {error}")]
    Bind {
        /// The interface.
        iface: String,
        /// The index used.
        ifindex: u32,
        /// The kernel's error.
        error: io::Error,
    },
    /// The socket could not be registered with the tokio reactor.
    #[error("{iface}: cannot register the packet socket with the async runtime: {error}")]
    Register {
        /// The interface.
        iface: String,
        /// The error.
        error: io::Error,
    },
    /// send(2) failed (link down, interface gone...).
    #[error("{iface}: sending the announcement for {vip} failed after {sent} frames: {error}")]
    Send {
        /// The interface.
        iface: String,
        /// The VIP whose frame failed.
        vip: IpAddr,
        /// Frames sent before the failure.
        sent: usize,
        /// The kernel's error.
        error: io::Error,
    },
}

/// Sends GARP / NA frames on one interface.
#[derive(Debug)]
pub struct Announcer {
    fd: AsyncFd<Socket>,
    iface: String,
    ifindex: u32,
    mac: [u8; 6],
    router: bool,
}

impl Announcer {
    /// Opens a send-only packet socket on `iface` (index `ifindex`, Ethernet
    /// address `mac`). NAs go out with R=0 unless [`Self::with_router`] says
    /// otherwise. Must be called inside a tokio runtime with I/O enabled.
    pub fn open(iface: &str, ifindex: u32, mac: [u8; 6]) -> Result<Announcer, AnnounceError> {
        // Protocol 0: the socket receives nothing, so nothing queues up unread.
        let socket =
            Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0))).map_err(|source| {
                match source.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => AnnounceError::NeedsCapNetRaw {
                        iface: iface.to_owned(),
                    },
                    _ => AnnounceError::Open {
                        iface: iface.to_owned(),
                        error: source,
                    },
                }
            })?;
        let bind_err = |source| AnnounceError::Bind {
            iface: iface.to_owned(),
            ifindex,
            error: source,
        };
        bind_to_ifindex(&socket, ifindex).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        // SAFETY: a socket2::Socket owns its fd, keeps it open until dropped and
        // always reports the same one; the AsyncFd owns the Socket.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|err| AnnounceError::Register {
            iface: iface.to_owned(),
            error: err.into(),
        })?;
        Ok(Announcer {
            fd,
            iface: iface.to_owned(),
            ifindex,
            mac,
            router: false,
        })
    }

    /// Sets the NA Router flag: true when this node forwards IPv6 on the interface.
    pub fn with_router(mut self, router: bool) -> Announcer {
        self.router = router;
        self
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The Ethernet source of the frames.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends `count` rounds of one frame per VIP, in the order given (VIP1, VIP2,
    /// VIP1, VIP2, ... as keepalived), waiting `spacing` between rounds (zero:
    /// back to back). Returns the number of frames sent.
    pub async fn send_burst(
        &self,
        vips: &[IpAddr],
        count: u32,
        spacing: Duration,
    ) -> Result<usize, AnnounceError> {
        let frames: Vec<(IpAddr, Vec<u8>)> = vips
            .iter()
            .map(|&vip| (vip, announcement_frame(self.mac, vip, self.router)))
            .collect();
        let mut sent = 0;
        for round in 0..count {
            if round > 0 && !spacing.is_zero() {
                tokio::time::sleep(spacing).await;
            }
            for (vip, frame) in &frames {
                self.send_frame(frame)
                    .await
                    .map_err(|source| AnnounceError::Send {
                        iface: self.iface.clone(),
                        vip: *vip,
                        sent,
                        error: source,
                    })?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    async fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let sent = self
            .fd
            .async_io(Interest::WRITABLE, |socket| socket.send(frame))
            .await?;
        if sent == frame.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", frame.len()),
            ))
        }
    }
}

fn bind_to_ifindex(socket: &Socket, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex =
        libc::c_int::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is open and `addr` is a sockaddr_ll of the length given.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keepalived captures: GARP and NA frames with their exact bytes.
    fn captured_frames(file: &str, ethertype: &str) -> Vec<Vec<u8>> {
        let path = format!(
            "{}/../crates/vrrp/tests/vectors/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["frame_hex"].as_str().unwrap())
            .filter(|hex| &hex[24..28] == ethertype)
            .map(unhex)
            .collect()
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    const N1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x00];

    #[test]
    fn garp_frames_match_keepalived_s6_byte_for_byte() {
        let captured = captured_frames("s6.json", "0806");
        assert_eq!(captured.len(), 20, "s6 holds two bursts of 10 GARPs");
        for (i, frame) in captured.iter().enumerate() {
            // Rounds alternate VIP1, VIP2 as keepalived sends them.
            let vip = if i % 2 == 0 {
                Ipv4Addr::new(198, 18, 0, 161)
            } else {
                Ipv4Addr::new(198, 18, 0, 162)
            };
            assert_eq!(&garp_frame(N1_MAC, vip)[..], &frame[..], "GARP {i}");
        }
    }

    #[test]
    fn garp_frames_match_keepalived_s5_for_the_backup_node() {
        let captured = captured_frames("s5.json", "0806");
        assert_eq!(captured.len(), 5);
        let n2_mac = [0x02, 0, 0, 0, 0x02, 0x00];
        for frame in &captured {
            assert_eq!(
                &garp_frame(n2_mac, Ipv4Addr::new(198, 18, 0, 100))[..],
                &frame[..]
            );
        }
    }

    #[test]
    fn na_frames_match_keepalived_s6_byte_for_byte() {
        let captured: Vec<Vec<u8>> = captured_frames("s6.json", "86dd")
            .into_iter()
            .filter(|f| f[20] == 58) // ICMPv6, not the VRRP adverts
            .collect();
        assert_eq!(captured.len(), 20, "s6 holds two bursts of 10 NAs");
        let vips: [Ipv6Addr; 2] = [
            "fe80::62".parse().unwrap(),
            "2001:db8:0:a::162".parse().unwrap(),
        ];
        for (i, frame) in captured.iter().enumerate() {
            assert_eq!(
                &unsolicited_na_frame(N1_MAC, vips[i % 2], false)[..],
                &frame[..],
                "NA {i}"
            );
        }
    }

    #[test]
    fn router_flag_sets_r_and_keeps_the_checksum_valid() {
        let vip: Ipv6Addr = "2001:db8:0:a::162".parse().unwrap();
        let plain = unsolicited_na_frame(N1_MAC, vip, false);
        let router = unsolicited_na_frame(N1_MAC, vip, true);
        assert_eq!(plain[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 4], 0x20);
        assert_eq!(router[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 4], 0xa0);
        // One's-complement sum over pseudo-header and message folds to 0xffff.
        let icmp = &router[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..];
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for pair in bytes.chunks(2) {
                sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            }
        };
        add(&vip.octets());
        add(&ALL_NODES.octets());
        add(&[0, 0, 0, NA_LEN as u8, 0, 0, 0, 58]);
        add(icmp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn announcement_frame_picks_the_protocol_by_family() {
        let v4 = announcement_frame(N1_MAC, "198.18.0.100".parse().unwrap(), false);
        let v6 = announcement_frame(N1_MAC, "2001:db8::100".parse().unwrap(), false);
        assert_eq!((v4.len(), &v4[12..14]), (GARP_FRAME_LEN, &[0x08, 0x06][..]));
        assert_eq!((v6.len(), &v6[12..14]), (NA_FRAME_LEN, &[0x86, 0xdd][..]));
    }
}
