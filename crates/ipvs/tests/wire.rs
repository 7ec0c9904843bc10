//! Wire format of every IPVS message this crate sends, and decoding of the
//! kernel's answers, against bytes derived by hand from
//! /usr/include/linux/ip_vs.h and the kernel's attribute policy
//! (net/netfilter/ipvs/ip_vs_ctl.c).
//!
//! Layout reminders (x86_64, so host order = little endian):
//! - nlmsghdr: len u32, type u16 (= the family id, 0x001c here), flags u16,
//!   seq u32, pid u32 (0); then genlmsghdr: cmd u8, version u8 (=1), 2 zero bytes.
//! - flags: NLM_F_REQUEST 0x1 | NLM_F_ACK 0x4 = 0x0005 for operations,
//!   NLM_F_REQUEST | NLM_F_DUMP (0x300) = 0x0301 for dumps.
//! - nlattr: len u16 (header + value, without padding), type u16, value,
//!   padded to 4 bytes.
//! - ports and the IPv4 persistence netmask are big endian (__be16/__be32),
//!   addresses are 16-byte `union nf_inet_addr`, everything else host order.
#![cfg(target_endian = "little")]

use std::net::SocketAddr;

use ipvs::{
    decode_datagram, decode_dest, decode_info, decode_service, decode_timeouts, DaemonRole,
    Destination, Family, Forward, Info, IpvsMessage, Protocol, Reply, Request, Service,
    ServiceFlags, Stats, SyncDaemon, Timeouts,
};

const FAMILY: u16 = 0x1c;

/// "06 00 01 00" -> bytes; `|` and newlines are ignored, `#` starts a comment.
fn hex(s: &str) -> Vec<u8> {
    s.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .split(|c: char| c.is_whitespace() || c == '|')
        .filter(|t| !t.is_empty())
        .map(|t| u8::from_str_radix(t, 16).unwrap())
        .collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn vip() -> Service {
    Service::new(Protocol::Tcp, sa("198.18.0.100:80"), "rr")
}

fn real() -> Destination {
    Destination::new(sa("198.18.1.10:80"), Forward::Masq)
}

// IPVS_SVC_ATTR_AF..PORT of 198.18.0.100:80 tcp: 44 bytes.
const SVC_KEY: &str = "
    06 00 01 00 02 00 00 00                          # AF = AF_INET (2), u16 + 2 pad
    06 00 02 00 06 00 00 00                          # PROTOCOL = IPPROTO_TCP (6)
    14 00 03 00 c6 12 00 64 00 00 00 00 00 00 00 00
                00 00 00 00                          # ADDR: 198.18.0.100 in a 16-byte union
    06 00 04 00 00 50 00 00                          # PORT = 80, big endian";

// The rest of a full service entry, defaults: 36 bytes.
const SVC_SETTINGS: &str = "
    07 00 06 00 72 72 00 00                          # SCHED_NAME \"rr\\0\", 1 pad
    0c 00 07 00 00 00 00 00 ff ff ff ff              # FLAGS { flags 0, mask ~0 }
    08 00 08 00 00 00 00 00                          # TIMEOUT = 0
    08 00 09 00 ff ff ff ff                          # NETMASK = 255.255.255.255 (be32)";

// IPVS_DEST_ATTR_ADDR_FAMILY, ADDR, PORT of 198.18.1.10:80: 36 bytes.
const DEST_KEY: &str = "
    06 00 0b 00 02 00 00 00                          # ADDR_FAMILY = AF_INET
    14 00 01 00 c6 12 01 0a 00 00 00 00 00 00 00 00
                00 00 00 00                          # ADDR 198.18.1.10
    06 00 02 00 00 50 00 00                          # PORT = 80, big endian";

fn join(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| hex(p)).collect()
}

#[test]
fn new_service_bytes() {
    let expected = join(&[
        // 16 + 4 + 84 = 104 = 0x68 bytes; type 0x1c; REQUEST|ACK; seq 1.
        "68 00 00 00 1c 00 05 00 01 00 00 00 00 00 00 00",
        "01 01 00 00", // IPVS_CMD_NEW_SERVICE, version 1
        "54 00 01 00", // IPVS_CMD_ATTR_SERVICE, 4 + 44 + 36 = 84
        SVC_KEY,
        SVC_SETTINGS,
    ]);
    let got = Request::new_service(&vip()).unwrap().encode(FAMILY, 1);
    assert_eq!(got, expected);
}

#[test]
fn set_service_bytes_persistent() {
    // wlc, persistent 300 s per /24.
    let mut svc = vip().with_persistence(300, 24);
    svc.scheduler = "wlc".into();
    let expected = join(&[
        "68 00 00 00 1c 00 05 00 02 00 00 00 00 00 00 00", // seq 2
        "02 01 00 00",                                     // IPVS_CMD_SET_SERVICE
        "54 00 01 00",
        SVC_KEY,
        "08 00 06 00 77 6c 63 00",             // SCHED_NAME "wlc\0"
        "0c 00 07 00 01 00 00 00 ff ff ff ff", // FLAGS PERSISTENT (0x1), mask ~0
        "08 00 08 00 2c 01 00 00",             // TIMEOUT 300
        "08 00 09 00 ff ff ff 00",             // NETMASK 255.255.255.0 (be32)
    ]);
    assert_eq!(
        Request::set_service(&svc).unwrap().encode(FAMILY, 2),
        expected
    );
}

#[test]
fn new_service_bytes_ipv6_and_fwmark() {
    let v6 = Service::new(Protocol::Udp, sa("[2001:db8::1]:53"), "sh");
    let expected = join(&[
        // 16 + 4 + (4 + 8+8+20+8 + 8+12+8+8) = 104
        "68 00 00 00 1c 00 05 00 03 00 00 00 00 00 00 00",
        "01 01 00 00",
        "54 00 01 00",
        "06 00 01 00 0a 00 00 00", // AF_INET6 = 10
        "06 00 02 00 11 00 00 00", // IPPROTO_UDP = 17
        "14 00 03 00 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01", // 2001:db8::1
        "06 00 04 00 00 35 00 00", // port 53
        "07 00 06 00 73 68 00 00", // "sh\0"
        "0c 00 07 00 00 00 00 00 ff ff ff ff",
        "08 00 08 00 00 00 00 00",
        "08 00 09 00 80 00 00 00", // IPv6: prefix length 128 as a host-order u32
    ]);
    assert_eq!(
        Request::new_service(&v6).unwrap().encode(FAMILY, 3),
        expected
    );

    let marked = Service::fwmark(Family::V4, 42, "rr");
    let expected = join(&[
        // 16 + 4 + (4 + 8 + 8 + 36) = 76 = 0x4c
        "4c 00 00 00 1c 00 05 00 04 00 00 00 00 00 00 00",
        "01 01 00 00",
        "38 00 01 00",             // 4 + 52
        "06 00 01 00 02 00 00 00", // AF_INET
        "08 00 05 00 2a 00 00 00", // FWMARK 42, instead of protocol/addr/port
        SVC_SETTINGS,
    ]);
    assert_eq!(
        Request::new_service(&marked).unwrap().encode(FAMILY, 4),
        expected
    );
}

#[test]
fn del_service_bytes() {
    let expected = join(&[
        "44 00 00 00 1c 00 05 00 05 00 00 00 00 00 00 00", // 16 + 4 + 48 = 68
        "03 01 00 00",                                     // IPVS_CMD_DEL_SERVICE
        "30 00 01 00",                                     // 4 + 44: the key only
        SVC_KEY,
    ]);
    assert_eq!(Request::del_service(&vip()).encode(FAMILY, 5), expected);
}

#[test]
fn get_services_is_a_dump_without_attributes() {
    let expected = hex("14 00 00 00 1c 00 01 03 06 00 00 00 00 00 00 00 | 04 01 00 00");
    assert_eq!(Request::get_services().encode(FAMILY, 6), expected);
}

#[test]
fn new_and_set_dest_bytes() {
    let dest_full = "
        08 00 03 00 00 00 00 00   # FWD_METHOD = IP_VS_CONN_F_MASQ (0)
        08 00 04 00 01 00 00 00   # WEIGHT = 1
        08 00 05 00 00 00 00 00   # U_THRESH = 0
        08 00 06 00 00 00 00 00   # L_THRESH = 0";
    let expected = join(&[
        // 16 + 4 + 48 + 72 = 140 = 0x8c
        "8c 00 00 00 1c 00 05 00 07 00 00 00 00 00 00 00",
        "05 01 00 00", // IPVS_CMD_NEW_DEST
        "30 00 01 00",
        SVC_KEY,
        "48 00 02 00", // IPVS_CMD_ATTR_DEST, 4 + 36 + 32
        DEST_KEY,
        dest_full,
    ]);
    assert_eq!(
        Request::new_dest(&vip(), &real())
            .unwrap()
            .encode(FAMILY, 7),
        expected
    );

    let mut heavy = real().with_weight(5);
    heavy.forward = Forward::DirectRoute;
    heavy.upper_threshold = 100;
    heavy.lower_threshold = 10;
    let expected = join(&[
        "8c 00 00 00 1c 00 05 00 08 00 00 00 00 00 00 00",
        "06 01 00 00", // IPVS_CMD_SET_DEST
        "30 00 01 00",
        SVC_KEY,
        "48 00 02 00",
        DEST_KEY,
        "08 00 03 00 03 00 00 00", // IP_VS_CONN_F_DROUTE
        "08 00 04 00 05 00 00 00", // weight 5
        "08 00 05 00 64 00 00 00", // upper 100
        "08 00 06 00 0a 00 00 00", // lower 10
    ]);
    assert_eq!(
        Request::set_dest(&vip(), &heavy).unwrap().encode(FAMILY, 8),
        expected
    );
}

#[test]
fn del_dest_and_get_dests_bytes() {
    let expected = join(&[
        "6c 00 00 00 1c 00 05 00 09 00 00 00 00 00 00 00", // 16 + 4 + 48 + 40 = 108
        "07 01 00 00",                                     // IPVS_CMD_DEL_DEST
        "30 00 01 00",
        SVC_KEY,
        "28 00 02 00", // 4 + 36: the destination key only
        DEST_KEY,
    ]);
    assert_eq!(
        Request::del_dest(&vip(), &real()).encode(FAMILY, 9),
        expected
    );

    let expected = join(&[
        "44 00 00 00 1c 00 01 03 0a 00 00 00 00 00 00 00", // dump, 68 bytes
        "08 01 00 00",                                     // IPVS_CMD_GET_DEST
        "30 00 01 00",
        SVC_KEY,
    ]);
    assert_eq!(Request::get_dests(&vip()).encode(FAMILY, 10), expected);
}

#[test]
fn daemon_messages_bytes() {
    let expected = join(&[
        "34 00 00 00 1c 00 05 00 0b 00 00 00 00 00 00 00", // 16 + 4 + 32 = 52
        "09 01 00 00",                                     // IPVS_CMD_NEW_DAEMON
        "20 00 03 00",                                     // IPVS_CMD_ATTR_DAEMON, 4 + 28
        "08 00 01 00 01 00 00 00",                         // STATE = IP_VS_STATE_MASTER
        "0a 00 02 00 73 79 6e 63 30 00 00 00",             // MCAST_IFN "sync0\0", 2 pad
        "08 00 03 00 07 00 00 00",                         // SYNC_ID = 7
    ]);
    let master = SyncDaemon::new(DaemonRole::Master, "sync0", 7);
    assert_eq!(
        Request::new_daemon(&master).unwrap().encode(FAMILY, 11),
        expected
    );

    let mut backup = SyncDaemon::new(DaemonRole::Backup, "eth1", 200);
    backup.sync_maxlen = Some(1472);
    backup.mcast_group = Some("224.0.0.81".parse().unwrap());
    backup.mcast_port = Some(8848);
    backup.mcast_ttl = Some(1);
    let expected = join(&[
        "54 00 00 00 1c 00 05 00 0c 00 00 00 00 00 00 00", // 16 + 4 + 64 = 84
        "09 01 00 00",
        "40 00 03 00",                         // 4 + 8 + 12 + 8 + 8 + 8 + 8 + 8
        "08 00 01 00 02 00 00 00",             // STATE = IP_VS_STATE_BACKUP
        "09 00 02 00 65 74 68 31 00 00 00 00", // "eth1\0", 3 pad
        "08 00 03 00 c8 00 00 00",             // SYNC_ID 200
        "06 00 04 00 c0 05 00 00",             // SYNC_MAXLEN 1472 (u16)
        "08 00 05 00 e0 00 00 51",             // MCAST_GROUP 224.0.0.81 (in_addr)
        "06 00 07 00 90 22 00 00",             // MCAST_PORT 8848 (u16, host order)
        "05 00 08 00 01 00 00 00",             // MCAST_TTL 1 (u8)
    ]);
    assert_eq!(
        Request::new_daemon(&backup).unwrap().encode(FAMILY, 12),
        expected
    );

    let expected = join(&[
        "20 00 00 00 1c 00 05 00 0d 00 00 00 00 00 00 00", // 16 + 4 + 12 = 32
        "0a 01 00 00",                                     // IPVS_CMD_DEL_DAEMON
        "0c 00 03 00",
        "08 00 01 00 02 00 00 00", // only STATE is read
    ]);
    assert_eq!(
        Request::del_daemon(DaemonRole::Backup).encode(FAMILY, 13),
        expected
    );

    let expected = hex("14 00 00 00 1c 00 01 03 0e 00 00 00 00 00 00 00 | 0b 01 00 00");
    assert_eq!(Request::get_daemons().encode(FAMILY, 14), expected);
}

#[test]
fn info_config_zero_flush_bytes() {
    // IPVS_CMD_GET_INFO (15), IPVS_CMD_GET_CONFIG (13), IPVS_CMD_FLUSH (17),
    // IPVS_CMD_ZERO (16): no attributes, REQUEST|ACK.
    assert_eq!(
        Request::get_info().encode(FAMILY, 15),
        hex("14 00 00 00 1c 00 05 00 0f 00 00 00 00 00 00 00 | 0f 01 00 00")
    );
    assert_eq!(
        Request::get_config().encode(FAMILY, 16),
        hex("14 00 00 00 1c 00 05 00 10 00 00 00 00 00 00 00 | 0d 01 00 00")
    );
    assert_eq!(
        Request::flush().encode(FAMILY, 17),
        hex("14 00 00 00 1c 00 05 00 11 00 00 00 00 00 00 00 | 11 01 00 00")
    );
    assert_eq!(
        Request::zero(None).encode(FAMILY, 18),
        hex("14 00 00 00 1c 00 05 00 12 00 00 00 00 00 00 00 | 10 01 00 00")
    );
    let expected = join(&[
        "44 00 00 00 1c 00 05 00 13 00 00 00 00 00 00 00",
        "10 01 00 00",
        "30 00 01 00",
        SVC_KEY,
    ]);
    assert_eq!(Request::zero(Some(&vip())).encode(FAMILY, 19), expected);

    let t = Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    let expected = join(&[
        "2c 00 00 00 1c 00 05 00 14 00 00 00 00 00 00 00", // 16 + 4 + 24 = 44
        "0c 01 00 00",                                     // IPVS_CMD_SET_CONFIG
        "08 00 04 00 84 03 00 00",                         // TIMEOUT_TCP 900
        "08 00 05 00 78 00 00 00",                         // TIMEOUT_TCP_FIN 120
        "08 00 06 00 2c 01 00 00",                         // TIMEOUT_UDP 300
    ]);
    assert_eq!(Request::set_config(&t).encode(FAMILY, 20), expected);
}

#[test]
fn values_the_kernel_would_refuse_are_caught() {
    let mut svc = vip();
    svc.scheduler = "a-very-long-scheduler".into();
    assert!(Request::new_service(&svc).is_err());
    let too_heavy = real().with_weight(u32::MAX);
    assert!(Request::new_dest(&vip(), &too_heavy).is_err());
    let long_if = SyncDaemon::new(DaemonRole::Master, "an-interface-name", 1);
    assert!(Request::new_daemon(&long_if).is_err());
}

// --- decoding ---------------------------------------------------------------

#[test]
fn decodes_a_service_dump() {
    // Message 1: 198.18.0.100:80 tcp rr, flags with the kernel's HASHED bit
    // (0x2) set, counters in STATS (u32 conns, u64 bytes) and STATS64 (u64,
    // with the zero-length IPVS_STATS_ATTR_PAD nla_put_u64_64bit may add).
    let stats = "
        2c 00 0a 00                        # SVC_ATTR_STATS, 4 + 40
        08 00 01 00 03 00 00 00            # CONNS 3 (u32)
        08 00 02 00 0a 00 00 00            # INPKTS 10 (u32)
        0c 00 04 00 e8 03 00 00 00 00 00 00  # INBYTES 1000 (u64)
        0c 00 05 00 d0 07 00 00 00 00 00 00  # OUTBYTES 2000 (u64)";
    let stats64 = "
        20 00 0c 00                        # SVC_ATTR_STATS64, 4 + 28
        04 00 0b 00                        # IPVS_STATS_ATTR_PAD (no value)
        0c 00 01 00 03 00 00 00 00 00 00 00  # CONNS 3 (u64)
        0c 00 04 00 e8 03 00 00 00 00 00 00  # INBYTES 1000 (u64)";
    let msg1 = join(&[
        // 16 + 4 + 4 + 44 + 36 + 44 + 32 = 180 = 0xb4; NLM_F_MULTI; seq 7.
        "b4 00 00 00 1c 00 02 00 07 00 00 00 34 12 00 00",
        "01 01 00 00",
        "a0 00 01 00", // 4 + 44 + 36 + 44 + 32 = 160
        SVC_KEY,
        "07 00 06 00 72 72 00 00",
        "0c 00 07 00 02 00 00 00 ff ff ff ff", // HASHED
        "08 00 08 00 00 00 00 00",
        "08 00 09 00 ff ff ff ff",
        stats,
        stats64,
    ]);
    assert_eq!(msg1.len(), 0xb4);
    // Message 2: fwmark 42, persistent 60 s per /16, sh scheduler, no stats;
    // an attribute from a newer kernel (type 30) is kept, not refused.
    let msg2 = join(&[
        // 16 + 4 + 4 + 8 + 8 + 8 + 12 + 8 + 8 + 8 = 84 = 0x54
        "54 00 00 00 1c 00 02 00 07 00 00 00 34 12 00 00",
        "01 01 00 00",
        "40 00 01 00", // 4 + 60
        "06 00 01 00 02 00 00 00",
        "08 00 05 00 2a 00 00 00",             // FWMARK 42
        "07 00 06 00 73 68 00 00",             // "sh"
        "0c 00 07 00 03 00 00 00 ff ff ff ff", // PERSISTENT | HASHED
        "08 00 08 00 3c 00 00 00",             // 60 s
        "08 00 09 00 ff ff 00 00",             // 255.255.0.0
        "08 00 1e 00 01 02 03 04",             // unknown type 30
    ]);
    assert_eq!(msg2.len(), 0x54);
    let done = hex("14 00 00 00 03 00 02 00 07 00 00 00 34 12 00 00 | 00 00 00 00");
    let datagram = [msg1, msg2, done].concat();

    let replies = decode_datagram(&datagram).unwrap();
    assert_eq!(replies.len(), 3);
    assert!(matches!(replies[2], Reply::Done(7, 0)));
    let messages: Vec<&IpvsMessage> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Message(7, m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 2);

    let first = decode_service(messages[0]).unwrap();
    assert_eq!(first.service, vip()); // HASHED stripped
    assert_eq!(
        first.stats,
        Stats {
            conns: 3,
            in_bytes: 1000,
            ..Stats::default()
        },
        "STATS64 wins over STATS"
    );
    let second = decode_service(messages[1]).unwrap();
    let mut expected = Service::fwmark(Family::V4, 42, "sh").with_persistence(60, 16);
    expected.flags = ServiceFlags::PERSISTENT;
    assert_eq!(second.service, expected);
    assert_eq!(second.stats, Stats::default());
}

#[test]
fn decodes_a_destination_dump() {
    let msg = join(&[
        // 16 + 4 + 4 + 36 + 32 + 24 (conns) + 16 (STATS64) = 132 = 0x84
        "84 00 00 00 1c 00 02 00 09 00 00 00 00 00 00 00",
        "05 01 00 00", // IPVS_CMD_NEW_DEST
        "70 00 02 00", // IPVS_CMD_ATTR_DEST, 4 + 108
        DEST_KEY,
        "08 00 03 00 02 00 00 00", // IP_VS_CONN_F_TUNNEL
        "08 00 04 00 04 00 00 00", // weight 4
        "08 00 05 00 c8 00 00 00", // upper 200
        "08 00 06 00 14 00 00 00", // lower 20
        "08 00 07 00 05 00 00 00", // ACTIVE_CONNS 5
        "08 00 08 00 06 00 00 00", // INACT_CONNS 6
        "08 00 09 00 01 00 00 00", // PERSIST_CONNS 1
        "10 00 0c 00 0c 00 01 00 2a 00 00 00 00 00 00 00", // STATS64 { CONNS 42 }
    ]);
    assert_eq!(msg.len(), 0x84);
    let replies = decode_datagram(&msg).unwrap();
    let Reply::Message(9, m) = &replies[0] else {
        panic!("{replies:?}")
    };
    let entry = decode_dest(&vip(), m).unwrap();
    let mut expected = Destination::new(sa("198.18.1.10:80"), Forward::Tunnel).with_weight(4);
    expected.upper_threshold = 200;
    expected.lower_threshold = 20;
    assert_eq!(entry.destination, expected);
    assert_eq!(
        (
            entry.active_conns,
            entry.inactive_conns,
            entry.persist_conns
        ),
        (5, 6, 1)
    );
    assert_eq!(entry.stats.conns, 42);
}

#[test]
fn decodes_daemon_info_config_and_acks() {
    // GET_DAEMON dump entry as 6.1 fills it (ip_vs_genl_fill_daemon).
    let daemon = join(&[
        // 16 + 4 + 4 + 8 + 12 + 8 + 8 + 8 + 8 + 8 = 84 = 0x54
        "54 00 00 00 1c 00 02 00 03 00 00 00 00 00 00 00",
        "09 01 00 00",                         // IPVS_CMD_NEW_DAEMON
        "40 00 03 00",                         // 4 + 60
        "08 00 01 00 01 00 00 00",             // master
        "0a 00 02 00 73 79 6e 63 30 00 00 00", // "sync0"
        "08 00 03 00 07 00 00 00",             // syncid 7
        "06 00 04 00 c0 05 00 00",             // maxlen 1472
        "06 00 07 00 90 22 00 00",             // port 8848
        "05 00 08 00 01 00 00 00",             // ttl 1
        "08 00 05 00 e0 00 00 51",             // group 224.0.0.81
    ]);
    let replies = decode_datagram(&daemon).unwrap();
    let Reply::Message(3, m) = &replies[0] else {
        panic!("{replies:?}")
    };
    let ipvs::attr::CmdAttr::Daemon(attrs) = &m.attrs[0] else {
        panic!("{m:?}")
    };
    assert_eq!(attrs.len(), 7);
    assert!(attrs.contains(&ipvs::attr::DaemonAttr::McastIfn("sync0".into())));
    assert!(attrs.contains(&ipvs::attr::DaemonAttr::McastPort(8848)));

    // GET_INFO answer: IPVS_CMD_SET_INFO (14) with INFO_ATTR_VERSION (1) and
    // CONN_TAB_SIZE (2), then the ACK.
    let info = join(&[
        "24 00 00 00 1c 00 00 00 04 00 00 00 00 00 00 00",
        "0e 01 00 00",
        "08 00 01 00 01 02 01 00", // 0x010201
        "08 00 02 00 00 10 00 00", // 4096
        // NLMSG_ERROR with error 0: an ACK, echoing the request's header.
        "24 00 00 00 02 00 00 01 04 00 00 00 00 00 00 00",
        "00 00 00 00",
        "14 00 00 00 1c 00 05 00 04 00 00 00 00 00 00 00",
    ]);
    let replies = decode_datagram(&info).unwrap();
    assert!(matches!(replies[1], Reply::Ack(4, 0)));
    let msgs: Vec<IpvsMessage> = replies
        .into_iter()
        .filter_map(|r| match r {
            Reply::Message(_, m) => Some(m),
            _ => None,
        })
        .collect();
    let got = decode_info(&msgs).unwrap();
    assert_eq!(
        got,
        Info {
            version: 0x010201,
            conn_table_size: 4096
        }
    );
    assert_eq!(got.version_string(), "1.2.1");

    // GET_CONFIG answer: IPVS_CMD_SET_CONFIG (12) with the timeouts.
    let config = join(&[
        "2c 00 00 00 1c 00 00 00 05 00 00 00 00 00 00 00",
        "0c 01 00 00",
        "08 00 04 00 84 03 00 00",
        "08 00 05 00 78 00 00 00",
        "08 00 06 00 2c 01 00 00",
    ]);
    let Reply::Message(5, m) = &decode_datagram(&config).unwrap()[0] else {
        panic!()
    };
    assert_eq!(
        decode_timeouts(std::slice::from_ref(m)).unwrap(),
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        }
    );

    // A refusal: NLMSG_ERROR with -EEXIST (-17 = 0xffffffef).
    let nack = hex(
        "24 00 00 00 02 00 00 01 06 00 00 00 00 00 00 00 | ef ff ff ff |
         8c 00 00 00 1c 00 05 00 06 00 00 00 00 00 00 00",
    );
    assert!(matches!(
        decode_datagram(&nack).unwrap()[0],
        Reply::Ack(6, -17)
    ));
}

#[test]
fn truncated_reply_is_an_error_not_a_panic() {
    // A service attribute claiming 0x54 bytes in a 28-byte message.
    let bad = hex(
        "1c 00 00 00 1c 00 02 00 01 00 00 00 00 00 00 00 | 01 01 00 00 | 54 00 01 00 06 00 01 00",
    );
    assert!(decode_datagram(&bad).is_err());
}
