//! Whole frames as a neighbour sees them: GARP / NA bursts and the IP headers of
//! adverts, captured on lb2 with a packet socket made here. Needs root (prints
//! SKIP otherwise).

use std::future::Future;
use std::io::Read;
use std::mem::size_of;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use integration::{HostSpec, Lab, NetnsThread, Prefix, Role, Topology};
use socket2::{Domain, Protocol, Socket, Type};
use vrrp::packet::Family;
use vrrpd::net::{interface_index, interface_mac, AnnounceError, Announcer, VrrpSocket};

/// The MAC the harness gives lb1's eth0 (host 1, interface 0).
const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x00];
/// GARP for 198.18.0.100 from LB1_MAC, written out from the keepalived format.
const GARP_100: &str = "ffffffffffff0200000001000806000108000604000102000000010\
0c6120064ffffffffffffc6120064";
/// Unsolicited NA for 2001:db8:0:a::100 from LB1_MAC (checksum computed apart).
const NA_100: &str = "33330000000102000000010086dd6000000000203aff20010db80000000a000000000000\
0100ff0200000000000000000000000000018800f6192000000020010db80000000a00000000000001000201\
020000000100";
/// A VIP announced after each burst: its frame marks the end of the burst.
const MARKER: &str = "198.18.0.199";
const S1_PAYLOAD: &str = "210b96010001827bc61200640000000000000000";
const PATIENCE: Duration = Duration::from_secs(10);

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn lab() -> Lab {
    let host = |name: &str, h: u8| {
        HostSpec::new(name, Role::Balancer).interface(
            "eth0",
            "public",
            &[
                Prefix::v4(198, 18, 0, h, 24),
                Prefix::v6(
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0xa, 0, 0, 0, u16::from(h)),
                    64,
                ),
            ],
        )
    };
    let lab = Lab::up(
        Topology::new()
            .bridge("public")
            .host(host("lb1", 11))
            .host(host("lb2", 12)),
    )
    .unwrap();
    assert_eq!(
        lab["lb1"].link("eth0").unwrap().mac,
        "02:00:00:00:01:00",
        "harness MAC plan changed"
    );
    lab
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A packet socket on eth0 that sees every frame (ETH_P_ALL), in and out.
fn capture_socket() -> Socket {
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all))).unwrap();
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = interface_index("eth0").unwrap() as i32;
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// On lb2: collects the frames from lb1 that `keep` selects, until one equals
/// `last` (which is included), or only the first one when `last` is None.
fn capture_on_lb2(
    lab: &Lab,
    keep: fn(&[u8]) -> bool,
    last: Option<Vec<u8>>,
) -> NetnsThread<Vec<Vec<u8>>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = lab["lb2"]
        .thread_in(move || {
            let mut socket = capture_socket();
            ready_tx.send(()).unwrap();
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = socket.read(&mut buf).expect("capture timed out");
                let frame = &buf[..n];
                if frame.len() >= 14 && frame[6..12] == LB1_MAC && keep(frame) {
                    frames.push(frame.to_vec());
                    if last.as_ref().is_none_or(|last| frame == last.as_slice()) {
                        return frames;
                    }
                }
            }
        })
        .unwrap();
    ready_rx.recv().unwrap();
    thread
}

fn is_announcement(frame: &[u8]) -> bool {
    let arp = frame[12..14] == [0x08, 0x06];
    let na =
        frame.len() > 54 && frame[12..14] == [0x86, 0xdd] && frame[20] == 58 && frame[54] == 136;
    arp || na
}

/// On lb1: the bursts, then the marker; returns the frame counts send_burst reported.
fn announce_from_lb1(lab: &Lab, bursts: &[(Vec<IpAddr>, u32, Duration)]) -> Vec<usize> {
    lab["lb1"]
        .run_in(|| {
            block_on(async {
                let mac = interface_mac("eth0").unwrap();
                let announcer =
                    Announcer::open("eth0", interface_index("eth0").unwrap(), mac).unwrap();
                let mut counts = Vec::new();
                for (vips, count, spacing) in bursts {
                    counts.push(announcer.send_burst(vips, *count, *spacing).await.unwrap());
                }
                announcer
                    .send_burst(&[ip(MARKER)], 1, Duration::ZERO)
                    .await
                    .unwrap();
                counts
            })
        })
        .unwrap()
}

fn marker_frame() -> Vec<u8> {
    vrrpd::net::announce::garp_frame(LB1_MAC, MARKER.parse().unwrap()).to_vec()
}

#[test]
fn a_garp_burst_of_3_arrives_as_3_exact_arp_requests() {
    if !integration::have_root("a_garp_burst_of_3_arrives_as_3_exact_arp_requests") {
        return;
    }
    let lab = lab();
    let capture = capture_on_lb2(&lab, is_announcement, Some(marker_frame()));
    let counts = announce_from_lb1(&lab, &[(vec![ip("198.18.0.100")], 3, Duration::ZERO)]);
    let mut frames = capture.join().unwrap();
    assert_eq!(frames.pop(), Some(marker_frame()));
    assert_eq!(counts, [3]);
    assert_eq!(frames, vec![unhex(GARP_100); 3]);
}

#[test]
fn an_na_burst_of_3_arrives_as_3_exact_neighbour_advertisements() {
    if !integration::have_root("an_na_burst_of_3_arrives_as_3_exact_neighbour_advertisements") {
        return;
    }
    let lab = lab();
    let capture = capture_on_lb2(&lab, is_announcement, Some(marker_frame()));
    let counts = announce_from_lb1(&lab, &[(vec![ip("2001:db8:0:a::100")], 3, Duration::ZERO)]);
    let mut frames = capture.join().unwrap();
    assert_eq!(frames.pop(), Some(marker_frame()));
    assert_eq!(counts, [3]);
    assert_eq!(frames, vec![unhex(NA_100); 3]);
}

#[test]
fn a_burst_with_spacing_sends_rounds_in_vip_order() {
    if !integration::have_root("a_burst_with_spacing_sends_rounds_in_vip_order") {
        return;
    }
    let lab = lab();
    let capture = capture_on_lb2(&lab, is_announcement, Some(marker_frame()));
    let vips = vec![ip("198.18.0.100"), ip("2001:db8:0:a::100")];
    let counts = announce_from_lb1(&lab, &[(vips, 2, Duration::from_millis(20))]);
    let mut frames = capture.join().unwrap();
    assert_eq!(frames.pop(), Some(marker_frame()));
    assert_eq!(counts, [4]);
    let (garp, na) = (unhex(GARP_100), unhex(NA_100));
    assert_eq!(frames, vec![garp.clone(), na.clone(), garp, na]);
}

#[test]
fn a_burst_on_a_down_interface_fails_naming_it() {
    if !integration::have_root("a_burst_on_a_down_interface_fails_naming_it") {
        return;
    }
    let lab = lab();
    lab["lb1"].set_link("eth0", false).unwrap();
    let err = lab["lb1"]
        .run_in(|| {
            block_on(async {
                let announcer =
                    Announcer::open("eth0", interface_index("eth0").unwrap(), LB1_MAC).unwrap();
                announcer
                    .send_burst(&[ip("198.18.0.100")], 3, Duration::ZERO)
                    .await
                    .unwrap_err()
            })
        })
        .unwrap();
    assert!(matches!(err, AnnounceError::Send { sent: 0, .. }), "{err}");
    assert!(err.to_string().starts_with("eth0: "), "{err}");
}

fn is_vrrp(frame: &[u8]) -> bool {
    (frame[12..14] == [0x08, 0x00] && frame[23] == 112)
        || (frame[12..14] == [0x86, 0xdd] && frame[20] == 112)
}

/// Sends one advert from lb1 (again every 100 ms until lb2 has captured it)
/// and returns the frame lb2 captured.
fn advert_frame(lab: &Lab, family: Family, source: IpAddr) -> Vec<u8> {
    let capture = capture_on_lb2(lab, is_vrrp, None);
    lab["lb1"]
        .run_in(|| {
            block_on(async {
                let socket = VrrpSocket::open(
                    "eth0",
                    interface_index("eth0").unwrap(),
                    family,
                    source,
                    &[],
                )
                .unwrap();
                for _ in 0..100 {
                    socket.send_advert(&unhex(S1_PAYLOAD)).await.unwrap();
                    if capture.is_finished() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .unwrap();
    capture.join().unwrap().remove(0)
}

#[test]
fn ipv4_adverts_carry_keepalived_ip_headers() {
    if !integration::have_root("ipv4_adverts_carry_keepalived_ip_headers") {
        return;
    }
    let lab = lab();
    let frame = advert_frame(&lab, Family::Ipv4, ip("198.18.0.11"));
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    // eth dst 01:00:5e:00:00:12, IPv4 with IHL 5, TOS 0xc0, length 40.
    assert_eq!(&hex[..36], "01005e000012020000000100080045c00028", "{hex}");
    // Flags and fragment offset zero (DF clear), TTL 255, protocol 112.
    assert_eq!(&hex[40..48], "0000ff70", "{hex}");
    // 198.18.0.11 -> 224.0.0.18, then the message untouched.
    assert_eq!(&hex[52..68], "c612000be0000012", "{hex}");
    assert_eq!(&hex[68..], S1_PAYLOAD);
}

#[test]
fn ipv6_adverts_carry_keepalived_ip_headers() {
    if !integration::have_root("ipv6_adverts_carry_keepalived_ip_headers") {
        return;
    }
    let lab = lab();
    let source = lab["lb1"]
        .addresses("eth0")
        .unwrap()
        .into_iter()
        .map(|p| p.addr)
        .find(|a| matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .unwrap();
    let frame = advert_frame(&lab, Family::Ipv6, source);
    assert_eq!(frame[..6], [0x33, 0x33, 0, 0, 0, 0x12]);
    let ip6 = &frame[14..];
    let traffic_class = (ip6[0] & 0x0f) << 4 | ip6[1] >> 4;
    assert_eq!((ip6[0] >> 4, traffic_class), (6, 0xc0));
    assert_eq!(u16::from_be_bytes([ip6[4], ip6[5]]), 20, "payload length");
    assert_eq!((ip6[6], ip6[7]), (112, 255), "next header, hop limit");
    assert_eq!(
        IpAddr::from(<[u8; 16]>::try_from(&ip6[8..24]).unwrap()),
        source
    );
    assert_eq!(
        IpAddr::from(<[u8; 16]>::try_from(&ip6[24..40]).unwrap()),
        ip("ff02::12")
    );
    assert_eq!(ip6[40..], unhex(S1_PAYLOAD));
}
