//! Crafted VRRP packets put on a segment from a lab host through a packet
//! socket (whole Ethernet frames: any TTL, checksum or length we like).

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use integration::Host;
use socket2::{Domain, Protocol, Socket, Type};
use vrrp::checksum::ChecksumForm;
use vrrp::frame;
use vrrp::packet::{Advertisement, Auth, IpContext, Version};

/// The IPv4 VRRP group.
pub const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));

/// An IPv4 advert as a peer would send it (TTL 255, valid checksums).
pub fn advert(
    version: Version,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[&str],
) -> Advertisement {
    Advertisement {
        version,
        vrid,
        priority,
        interval_cs,
        addresses: vips.iter().map(|v| v.parse().unwrap()).collect(),
        auth: Auth::None,
    }
}

/// The IPv4 packet of `advert` from `src` to 224.0.0.18 with `ttl`.
pub fn ip_packet(advert: &Advertisement, src: &str, ttl: u8) -> Vec<u8> {
    let mut ctx = IpContext::new(src.parse().unwrap(), GROUP);
    ctx.ttl = ttl;
    frame::encode_ip(advert, &ctx, ChecksumForm::PseudoHeader).unwrap()
}

/// Cuts an IPv4 packet to `len` bytes and makes its header say so (total
/// length, header checksum): the IP layer is sound, the VRRP message short.
pub fn truncate_ipv4(packet: &mut Vec<u8>, len: usize) {
    packet.truncate(len);
    let total = (len as u16).to_be_bytes();
    packet[2..4].copy_from_slice(&total);
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = vrrp::checksum::internet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The Ethernet frame carrying an IPv4 packet to 224.0.0.18 from `src_mac`.
pub fn ethernet(src_mac: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let mut f = frame::multicast_mac(GROUP).unwrap().to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(packet);
    f
}

/// Sends each frame once on `iface` of `host`.
pub fn send_frames(host: &Host, iface: &str, frames: &[Vec<u8>]) {
    let iface = iface.to_owned();
    host.run_in(move || {
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0))).unwrap();
        let index = vrrpd::net::interface_index(&iface).unwrap();
        for f in frames {
            // SAFETY: a zeroed sockaddr_ll is valid; the fields set below are plain data.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = index as i32;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&f[..6]);
            // SAFETY: buffer and address are valid for the lengths given.
            let sent = unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(
                sent,
                f.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
        }
    })
    .unwrap();
}
