//! Raw VRRP sockets between two namespaces on one bridge: what one host sends,
//! the other receives byte for byte with the addresses and TTL of the wire.
//! Needs root (prints SKIP otherwise).

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use integration::{HostSpec, Lab, NetnsThread, Prefix, Role, Topology};
use socket2::{Domain, Protocol, Socket, Type};
use vrrp::packet::Family;
use vrrpd::net::{interface_index, Received, VrrpSocket};

/// s1 (keepalived VRRPv2 advert) payload; any bytes would do, these are real.
const S1_PAYLOAD: &str = "210b96010001827bc61200640000000000000000";
/// s4 (keepalived VRRPv3 IPv6 advert) payload, checksummed for keepalived's
/// own link-local source: the kernel must pass it through untouched.
const S4_PAYLOAD: &str =
    "3110960200640d01fe80000000000000000000000000001620010db80000000a0000000000000100";
const LB1_V4: &str = "198.18.0.11";
const LB2_V4: &str = "198.18.0.12";
const GROUP_V4: &str = "224.0.0.18";
const GROUP_V6: &str = "ff02::12";
/// How long a receiver waits: generous, the packets take microseconds.
const PATIENCE: Duration = Duration::from_secs(10);
/// Pause between repeated sends while the receiver has not got one yet.
const RESEND_EVERY: Duration = Duration::from_millis(100);

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// lb1 (.11) and lb2 (.12) on eth0, one bridge.
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
    Lab::up(
        Topology::new()
            .bridge("public")
            .host(host("lb1", 11))
            .host(host("lb2", 12)),
    )
    .unwrap()
}

fn link_local(lab: &Lab, host: &str) -> IpAddr {
    lab[host]
        .addresses("eth0")
        .unwrap()
        .into_iter()
        .map(|p| p.addr)
        .find(|a| matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .unwrap_or_else(|| panic!("{host} eth0 has no link-local address"))
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// On `host`, opens a VRRP socket on eth0 and returns the first packet it gets.
fn receive_one(
    lab: &Lab,
    host: &str,
    family: Family,
    source: IpAddr,
    peers: Vec<IpAddr>,
) -> NetnsThread<Received> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = lab[host]
        .thread_in(move || {
            block_on(async move {
                let socket = VrrpSocket::open(
                    "eth0",
                    interface_index("eth0").unwrap(),
                    family,
                    source,
                    &peers,
                )
                .unwrap();
                ready_tx.send(()).unwrap();
                tokio::time::timeout(PATIENCE, socket.recv())
                    .await
                    .expect("nothing received")
                    .unwrap()
            })
        })
        .unwrap();
    ready_rx.recv().expect("receiver failed to open its socket");
    thread
}

/// Calls `send` every RESEND_EVERY until `receiver` has finished: the first
/// packet after a lab comes up is the only one that might meet a cold path.
async fn send_until_received<T, F, Fut>(receiver: &NetnsThread<T>, mut send: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..(PATIENCE.as_millis() / RESEND_EVERY.as_millis()) {
        send().await;
        if receiver.is_finished() {
            return;
        }
        tokio::time::sleep(RESEND_EVERY).await;
    }
}

fn vrrp_send_until_received<T>(
    lab: &Lab,
    receiver: &NetnsThread<T>,
    family: Family,
    source: IpAddr,
    peers: Vec<IpAddr>,
    payload: &[u8],
) {
    lab["lb1"]
        .run_in(|| {
            block_on(async {
                let socket = VrrpSocket::open(
                    "eth0",
                    interface_index("eth0").unwrap(),
                    family,
                    source,
                    &peers,
                )
                .unwrap();
                send_until_received(receiver, || async {
                    assert_eq!(
                        socket.send_advert(payload).await.unwrap(),
                        socket.advert_destinations().len()
                    );
                })
                .await;
            })
        })
        .unwrap();
}

#[test]
fn ipv4_multicast_advert_arrives_intact_with_ttl_255() {
    if !integration::have_root("ipv4_multicast_advert_arrives_intact_with_ttl_255") {
        return;
    }
    let lab = lab();
    let payload = unhex(S1_PAYLOAD);
    let receiver = receive_one(&lab, "lb2", Family::Ipv4, ip(LB2_V4), vec![]);
    vrrp_send_until_received(&lab, &receiver, Family::Ipv4, ip(LB1_V4), vec![], &payload);
    let got = receiver.join().unwrap();
    let lb2_eth0 = lab["lb2"]
        .run_in(|| interface_index("eth0").unwrap())
        .unwrap();
    assert_eq!(got.payload, payload);
    assert_eq!((got.src, got.dst, got.ttl), (ip(LB1_V4), ip(GROUP_V4), 255));
    assert_eq!(got.ifindex, lb2_eth0);
    assert_arrived_just_now(got.arrived);
}

/// The kernel's receive timestamp (SO_TIMESTAMPNS) is there and of the last seconds.
fn assert_arrived_just_now(arrived: Option<std::time::SystemTime>) {
    let arrived = arrived.expect("a receive timestamp");
    let age = std::time::SystemTime::now()
        .duration_since(arrived)
        .expect("a timestamp not in the future");
    assert!(age < Duration::from_secs(30), "received {age:?} ago");
}

#[test]
fn ipv4_unicast_advert_goes_to_the_peer_with_ttl_255() {
    if !integration::have_root("ipv4_unicast_advert_goes_to_the_peer_with_ttl_255") {
        return;
    }
    let lab = lab();
    let payload = unhex(S1_PAYLOAD);
    let receiver = receive_one(&lab, "lb2", Family::Ipv4, ip(LB2_V4), vec![ip(LB1_V4)]);
    vrrp_send_until_received(
        &lab,
        &receiver,
        Family::Ipv4,
        ip(LB1_V4),
        vec![ip(LB2_V4)],
        &payload,
    );
    let got = receiver.join().unwrap();
    assert_eq!(got.payload, payload);
    assert_eq!((got.src, got.dst, got.ttl), (ip(LB1_V4), ip(LB2_V4), 255));
}

#[test]
fn ipv6_multicast_advert_arrives_unaltered_from_the_link_local_with_hop_limit_255() {
    if !integration::have_root(
        "ipv6_multicast_advert_arrives_unaltered_from_the_link_local_with_hop_limit_255",
    ) {
        return;
    }
    let lab = lab();
    let payload = unhex(S4_PAYLOAD);
    let (lb1_ll, lb2_ll) = (link_local(&lab, "lb1"), link_local(&lab, "lb2"));
    let receiver = receive_one(&lab, "lb2", Family::Ipv6, lb2_ll, vec![]);
    vrrp_send_until_received(&lab, &receiver, Family::Ipv6, lb1_ll, vec![], &payload);
    let got = receiver.join().unwrap();
    // The checksum bytes (2..4) too: without IPV6_CHECKSUM the kernel leaves them be.
    assert_eq!(got.payload, payload);
    assert_eq!((got.src, got.dst, got.ttl), (lb1_ll, ip(GROUP_V6), 255));
    let lb2_eth0 = lab["lb2"]
        .run_in(|| interface_index("eth0").unwrap())
        .unwrap();
    assert_eq!(got.ifindex, lb2_eth0);
    assert_arrived_just_now(got.arrived);
}

#[test]
fn ipv6_unicast_advert_goes_to_the_peer_with_hop_limit_255() {
    if !integration::have_root("ipv6_unicast_advert_goes_to_the_peer_with_hop_limit_255") {
        return;
    }
    let lab = lab();
    let payload = unhex(S4_PAYLOAD);
    let (lb1_ll, lb2_ll) = (link_local(&lab, "lb1"), link_local(&lab, "lb2"));
    let receiver = receive_one(&lab, "lb2", Family::Ipv6, lb2_ll, vec![lb1_ll]);
    vrrp_send_until_received(
        &lab,
        &receiver,
        Family::Ipv6,
        lb1_ll,
        vec![lb2_ll],
        &payload,
    );
    let got = receiver.join().unwrap();
    assert_eq!(got.payload, payload);
    assert_eq!((got.src, got.dst, got.ttl), (lb1_ll, lb2_ll, 255));
}

/// A plain raw socket made here, not a VrrpSocket, sends with TTL 64.
fn plain_raw_socket(family: Family, hops: u32) -> Socket {
    let domain = if family == Family::Ipv4 {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(112))).unwrap();
    socket.bind_device(Some(b"eth0")).unwrap();
    if family == Family::Ipv4 {
        socket
            .set_multicast_if_v4(&LB1_V4.parse().unwrap())
            .unwrap();
        socket.set_multicast_ttl_v4(hops).unwrap();
    } else {
        socket
            .set_multicast_if_v6(interface_index("eth0").unwrap())
            .unwrap();
        socket.set_multicast_hops_v6(hops).unwrap();
    }
    socket
}

#[test]
fn a_ttl_other_than_255_is_reported_as_received() {
    if !integration::have_root("a_ttl_other_than_255_is_reported_as_received") {
        return;
    }
    let lab = lab();
    let payload = unhex(S1_PAYLOAD);
    let receiver = receive_one(&lab, "lb2", Family::Ipv4, ip(LB2_V4), vec![]);
    lab["lb1"]
        .run_in(|| {
            let socket = plain_raw_socket(Family::Ipv4, 64);
            let group: SocketAddr = format!("{GROUP_V4}:0").parse().unwrap();
            block_on(send_until_received(&receiver, || async {
                assert_eq!(
                    socket.send_to(&payload, &group.into()).unwrap(),
                    payload.len()
                );
            }));
        })
        .unwrap();
    let got = receiver.join().unwrap();
    assert_eq!((got.payload, got.src, got.ttl), (payload, ip(LB1_V4), 64));
}

#[test]
fn a_hop_limit_other_than_255_is_reported_as_received() {
    if !integration::have_root("a_hop_limit_other_than_255_is_reported_as_received") {
        return;
    }
    let lab = lab();
    let payload = unhex(S4_PAYLOAD);
    let lb1_ll = link_local(&lab, "lb1");
    let receiver = receive_one(&lab, "lb2", Family::Ipv6, link_local(&lab, "lb2"), vec![]);
    lab["lb1"]
        .run_in(|| {
            let socket = plain_raw_socket(Family::Ipv6, 64);
            let group = SocketAddrV6::new(
                GROUP_V6.parse().unwrap(),
                0,
                0,
                interface_index("eth0").unwrap(),
            );
            block_on(send_until_received(&receiver, || async {
                assert_eq!(
                    socket.send_to(&payload, &group.into()).unwrap(),
                    payload.len()
                );
            }));
        })
        .unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(
        (got.payload, got.src, got.dst, got.ttl),
        (payload, lb1_ll, ip(GROUP_V6), 64)
    );
}

/// lb1 sends P1 until it hears anything; lb2 answers each P1 from lb1 with P2.
/// Had lb1's own P1 been looped back, lb1 would hear it before lb2's answer.
fn own_adverts_are_not_heard(family: Family, addresses: impl Fn(&Lab) -> (IpAddr, IpAddr)) {
    let lab = lab();
    let (lb1, lb2) = addresses(&lab);
    let (p1, p2) = (vec![0x21, 0x01, 1], vec![0x21, 0x02, 2]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let responder = {
        let (stop, p1, p2) = (Arc::clone(&stop), p1.clone(), p2.clone());
        lab["lb2"]
            .thread_in(move || {
                block_on(async move {
                    let socket = VrrpSocket::open(
                        "eth0",
                        interface_index("eth0").unwrap(),
                        family,
                        lb2,
                        &[],
                    )
                    .unwrap();
                    ready_tx.send(()).unwrap();
                    let mut answered = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(got) = tokio::time::timeout(RESEND_EVERY, socket.recv()).await {
                            let got = got.unwrap();
                            if got.src == lb1 && got.payload == p1 {
                                socket.send_advert(&p2).await.unwrap();
                                answered += 1;
                            }
                        }
                    }
                    answered
                })
            })
            .unwrap()
    };
    ready_rx.recv().unwrap();
    let first_heard = lab["lb1"]
        .run_in(|| {
            block_on(async {
                let socket =
                    VrrpSocket::open("eth0", interface_index("eth0").unwrap(), family, lb1, &[])
                        .unwrap();
                for _ in 0..(PATIENCE.as_millis() / RESEND_EVERY.as_millis()) {
                    socket.send_advert(&p1).await.unwrap();
                    if let Ok(got) = tokio::time::timeout(RESEND_EVERY, socket.recv()).await {
                        return Some(got.unwrap());
                    }
                }
                None
            })
        })
        .unwrap()
        .expect("lb1 heard nothing");
    stop.store(true, Ordering::Relaxed);
    assert!(responder.join().unwrap() >= 1);
    assert_eq!((first_heard.src, first_heard.payload), (lb2, p2));
}

#[test]
fn ipv4_own_adverts_are_not_looped_back() {
    if !integration::have_root("ipv4_own_adverts_are_not_looped_back") {
        return;
    }
    own_adverts_are_not_heard(Family::Ipv4, |_| (ip(LB1_V4), ip(LB2_V4)));
}

#[test]
fn ipv6_own_adverts_are_not_looped_back() {
    if !integration::have_root("ipv6_own_adverts_are_not_looped_back") {
        return;
    }
    own_adverts_are_not_heard(Family::Ipv6, |lab| {
        (link_local(lab, "lb1"), link_local(lab, "lb2"))
    });
}

/// Clears CAP_NET_RAW from the calling thread's effective set (capabilities are
/// per thread on Linux, so the rest of the test process keeps it).
fn drop_cap_net_raw_in_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and two data structs, as capget/capset take for version 3.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_NET_RAW);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0
        );
    }
}

#[test]
fn without_cap_net_raw_the_error_says_so() {
    let (socket_err, announcer_err) = std::thread::spawn(|| {
        drop_cap_net_raw_in_this_thread();
        block_on(async {
            let socket = VrrpSocket::open("lo", 1, Family::Ipv4, ip("127.0.0.1"), &[]).unwrap_err();
            let announcer = vrrpd::net::Announcer::open("lo", 1, [0; 6]).unwrap_err();
            (socket.to_string(), announcer.to_string())
        })
    })
    .join()
    .unwrap();
    assert!(
        socket_err.starts_with("lo: ") && socket_err.contains("needs CAP_NET_RAW"),
        "{socket_err}"
    );
    assert!(
        announcer_err.starts_with("lo: ") && announcer_err.contains("needs CAP_NET_RAW"),
        "{announcer_err}"
    );
}

#[test]
fn a_unicast_socket_ignores_multicast_adverts() {
    if !integration::have_root("a_unicast_socket_ignores_multicast_adverts") {
        return;
    }
    let lab = lab();
    let (multicast_p1, unicast_p2) = (vec![0x21, 0x01, 1], vec![0x21, 0x02, 2]);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (heard_p1_tx, heard_p1_rx) = mpsc::channel();
    let lb2 = lab["lb2"]
        .thread_in(move || {
            block_on(async move {
                let ifindex = interface_index("eth0").unwrap();
                // The group is joined on lb2 (by this socket), so multicast adverts arrive.
                let multicast =
                    VrrpSocket::open("eth0", ifindex, Family::Ipv4, ip(LB2_V4), &[]).unwrap();
                let unicast =
                    VrrpSocket::open("eth0", ifindex, Family::Ipv4, ip(LB2_V4), &[ip(LB1_V4)])
                        .unwrap();
                ready_tx.send(()).unwrap();
                tokio::time::timeout(PATIENCE, multicast.recv())
                    .await
                    .unwrap()
                    .unwrap();
                heard_p1_tx.send(()).unwrap();
                tokio::time::timeout(PATIENCE, unicast.recv())
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let lb2_thread = &lb2;
    lab["lb1"]
        .run_in(move || {
            block_on(async {
                let ifindex = interface_index("eth0").unwrap();
                let multicast =
                    VrrpSocket::open("eth0", ifindex, Family::Ipv4, ip(LB1_V4), &[]).unwrap();
                let unicast =
                    VrrpSocket::open("eth0", ifindex, Family::Ipv4, ip(LB1_V4), &[ip(LB2_V4)])
                        .unwrap();
                for _ in 0..(PATIENCE.as_millis() / RESEND_EVERY.as_millis()) {
                    multicast.send_advert(&multicast_p1).await.unwrap();
                    if heard_p1_rx.recv_timeout(RESEND_EVERY).is_ok() {
                        break;
                    }
                }
                send_until_received(lb2_thread, || async {
                    unicast.send_advert(&unicast_p2).await.unwrap();
                })
                .await;
            })
        })
        .unwrap();
    let got = lb2.join().unwrap();
    assert_eq!((got.payload, got.dst), (vec![0x21, 0x02, 2], ip(LB2_V4)));
}

/// Before it acts on a timer the event loop reads the adverts queued on a socket
/// itself: a packet the runtime never saw arrive (its reactor was not polled) is
/// read at once, and an empty socket answers "nothing" instead of blocking.
#[test]
fn a_queued_advert_is_read_without_the_runtime_polling_the_socket() {
    if !integration::have_root("a_queued_advert_is_read_without_the_runtime_polling_the_socket") {
        return;
    }
    let lab = lab();
    let payload = unhex(S1_PAYLOAD);
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = lab["lb2"]
        .thread_in(move || {
            block_on(async move {
                let socket = VrrpSocket::open(
                    "eth0",
                    interface_index("eth0").unwrap(),
                    Family::Ipv4,
                    ip(LB2_V4),
                    &[],
                )
                .unwrap();
                ready_tx.send(()).unwrap();
                // Never awaits: the runtime cannot learn that the socket is readable.
                let deadline = std::time::Instant::now() + PATIENCE;
                let got = loop {
                    if let Some(r) = socket.recv_queued() {
                        break r.unwrap();
                    }
                    assert!(std::time::Instant::now() < deadline, "nothing queued");
                    std::thread::sleep(Duration::from_millis(5));
                };
                let mut more = 0;
                while socket.recv_queued().is_some() {
                    more += 1;
                    assert!(more < 1000, "the queue never ends");
                }
                got
            })
        })
        .unwrap();
    ready_rx.recv().expect("receiver failed to open its socket");
    vrrp_send_until_received(&lab, &receiver, Family::Ipv4, ip(LB1_V4), vec![], &payload);
    let got = receiver.join().unwrap();
    assert_eq!(got.payload, payload);
    assert_eq!((got.src, got.dst, got.ttl), (ip(LB1_V4), ip(GROUP_V4), 255));
}
