//! Against a real IPVS: run inside the VM by integration/vm/ipvs-tests.sh
//! (`--ignored`, in network namespace `lb`; see integration/vm/guest-tests.sh
//! for what that namespace holds). `ipvsadm` is the independent reader.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;

use ipvs::{
    DaemonRole, Destination, Family, Forward, IpvsClient, IpvsError, Protocol, Service,
    ServiceFlags, SyncDaemon,
};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs ipvsadm and returns its stdout; panics with its stderr on failure.
fn ipvsadm(args: &[&str]) -> String {
    let out = Command::new("ipvsadm").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ipvsadm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The real servers of one TCP service as `ipvsadm -Ln -t` lists them:
/// (address:port, forward, weight).
fn ipvsadm_dests(vip: &str) -> BTreeSet<(String, String, u32)> {
    ipvsadm(&["-Ln", "-t", vip])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["->", addr, fwd, weight, ..] if *addr != "RemoteAddress:Port" => {
                    Some((addr.to_string(), fwd.to_string(), weight.parse().unwrap()))
                }
                _ => None,
            }
        })
        .collect()
}

fn dest_set(entries: &[(&str, &str, u32)]) -> BTreeSet<(String, String, u32)> {
    entries
        .iter()
        .map(|(a, f, w)| (a.to_string(), f.to_string(), *w))
        .collect()
}

/// Deletes a service when dropped, so that a failed test leaves nothing.
struct ServiceGuard(Service);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = IpvsClient::connect() {
            let _ = c.del_service(&self.0);
        }
    }
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn connect_and_info_match_ipvsadm() {
    let mut c = IpvsClient::connect().unwrap();
    let info = c.info().unwrap();
    // "IP Virtual Server version 1.2.1 (size=4096)"
    let header = ipvsadm(&["-Ln"]).lines().next().unwrap().to_string();
    assert_eq!(
        header,
        format!(
            "IP Virtual Server version {} (size={})",
            info.version_string(),
            info.conn_table_size
        )
    );
    assert!(info.version >= 0x010200, "{info:?}");
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn service_with_two_masq_destinations_as_ipvsadm_shows() {
    let mut c = IpvsClient::connect().unwrap();
    let svc = Service::new(Protocol::Tcp, sa("198.18.0.100:80"), "rr");
    c.add_service(&svc).unwrap();
    let _guard = ServiceGuard(svc.clone());
    let d1 = Destination::new(sa("198.18.1.10:80"), Forward::Masq);
    let d2 = Destination::new(sa("198.18.1.11:80"), Forward::Masq);
    c.add_dest(&svc, &d1).unwrap();
    c.add_dest(&svc, &d2).unwrap();

    assert_eq!(
        ipvsadm_dests("198.18.0.100:80"),
        dest_set(&[("198.18.1.10:80", "Masq", 1), ("198.18.1.11:80", "Masq", 1)])
    );
    let listed: Vec<Service> = c
        .services()
        .unwrap()
        .into_iter()
        .map(|e| e.service)
        .collect();
    assert!(listed.contains(&svc), "{listed:?}");
    let dests: BTreeSet<_> = c
        .destinations(&svc)
        .unwrap()
        .into_iter()
        .map(|e| e.destination.to_string() + &format!(" w{}", e.destination.weight))
        .collect();
    assert_eq!(
        dests,
        BTreeSet::from([
            "198.18.1.10:80 w1".to_string(),
            "198.18.1.11:80 w1".to_string()
        ])
    );
    let read: Vec<Destination> = c
        .destinations(&svc)
        .unwrap()
        .into_iter()
        .map(|e| e.destination)
        .collect();
    assert!(read.contains(&d1) && read.contains(&d2), "{read:?}");

    let d1_heavy = d1.clone().with_weight(5);
    c.edit_dest(&svc, &d1_heavy).unwrap();
    assert_eq!(
        ipvsadm_dests("198.18.0.100:80"),
        dest_set(&[("198.18.1.10:80", "Masq", 5), ("198.18.1.11:80", "Masq", 1)])
    );

    c.del_dest(&svc, &d2).unwrap();
    assert_eq!(
        ipvsadm_dests("198.18.0.100:80"),
        dest_set(&[("198.18.1.10:80", "Masq", 5)])
    );
    let read: Vec<Destination> = c
        .destinations(&svc)
        .unwrap()
        .into_iter()
        .map(|e| e.destination)
        .collect();
    assert_eq!(read, vec![d1_heavy]);

    // Scheduler change through edit_service.
    let mut wlc = svc.clone();
    wlc.scheduler = "wlc".into();
    c.edit_service(&wlc).unwrap();
    assert!(ipvsadm(&["-Ln", "-t", "198.18.0.100:80"]).contains("198.18.0.100:80 wlc"));

    c.del_service(&svc).unwrap();
    assert!(!ipvsadm(&["-Ln"]).contains("198.18.0.100:80"));
    assert!(matches!(
        c.del_service(&svc),
        Err(IpvsError::NoSuchService { .. })
    ));
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn services_added_by_ipvsadm_are_read_unchanged() {
    // Persistent TCP with a /24 persistence mask and thresholds, UDP
    // one-packet, and a fwmark service.
    ipvsadm(&[
        "-A",
        "-t",
        "198.18.0.101:443",
        "-s",
        "wlc",
        "-p",
        "300",
        "-M",
        "255.255.255.0",
    ]);
    let _g1 = ServiceGuard(Service::new(Protocol::Tcp, sa("198.18.0.101:443"), "wlc"));
    ipvsadm(&[
        "-a",
        "-t",
        "198.18.0.101:443",
        "-r",
        "198.18.1.12:443",
        "-m",
        "-w",
        "7",
        "-x",
        "100",
        "-y",
        "10",
    ]);
    ipvsadm(&["-A", "-u", "198.18.0.101:53", "-s", "sh", "-o"]);
    let _g2 = ServiceGuard(Service::new(Protocol::Udp, sa("198.18.0.101:53"), "sh"));
    ipvsadm(&[
        "-a",
        "-u",
        "198.18.0.101:53",
        "-r",
        "198.18.1.13:53",
        "-g",
        "-w",
        "2",
    ]);
    ipvsadm(&["-A", "-f", "42", "-s", "mh"]);
    let _g3 = ServiceGuard(Service::fwmark(Family::V4, 42, "mh"));

    let mut c = IpvsClient::connect().unwrap();
    let services: Vec<Service> = c
        .services()
        .unwrap()
        .into_iter()
        .map(|e| e.service)
        .collect();

    let persistent =
        Service::new(Protocol::Tcp, sa("198.18.0.101:443"), "wlc").with_persistence(300, 24);
    assert!(services.contains(&persistent), "{services:?}");
    let mut one_packet = Service::new(Protocol::Udp, sa("198.18.0.101:53"), "sh");
    one_packet.flags = ServiceFlags::ONE_PACKET;
    assert!(services.contains(&one_packet), "{services:?}");
    let marked = Service::fwmark(Family::V4, 42, "mh");
    assert!(services.contains(&marked), "{services:?}");

    let d: Vec<Destination> = c
        .destinations(&persistent)
        .unwrap()
        .into_iter()
        .map(|e| e.destination)
        .collect();
    let mut expected = Destination::new(sa("198.18.1.12:443"), Forward::Masq).with_weight(7);
    expected.upper_threshold = 100;
    expected.lower_threshold = 10;
    assert_eq!(d, vec![expected]);
    let d: Vec<Destination> = c
        .destinations(&one_packet)
        .unwrap()
        .into_iter()
        .map(|e| e.destination)
        .collect();
    assert_eq!(
        d,
        vec![Destination::new(sa("198.18.1.13:53"), Forward::DirectRoute).with_weight(2)]
    );
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn duplicate_and_missing_objects_are_named() {
    let mut c = IpvsClient::connect().unwrap();
    let svc = Service::new(Protocol::Tcp, sa("198.18.0.103:80"), "rr");
    c.add_service(&svc).unwrap();
    let _guard = ServiceGuard(svc.clone());
    assert!(matches!(
        c.add_service(&svc),
        Err(IpvsError::ServiceExists { .. })
    ));
    let d = Destination::new(sa("198.18.1.14:80"), Forward::Masq);
    c.add_dest(&svc, &d).unwrap();
    assert!(matches!(
        c.add_dest(&svc, &d),
        Err(IpvsError::DestinationExists { .. })
    ));
    let absent = Destination::new(sa("198.18.1.15:80"), Forward::Masq);
    assert!(matches!(
        c.del_dest(&svc, &absent),
        Err(IpvsError::NoSuchDestination { .. })
    ));
    let other = Service::new(Protocol::Tcp, sa("198.18.0.104:80"), "rr");
    let err = c.add_dest(&other, &d).unwrap_err();
    assert!(matches!(err, IpvsError::NoSuchService { .. }), "{err:?}");
    let bogus = Service::new(Protocol::Tcp, sa("198.18.0.105:80"), "nosuch");
    let err = c.add_service(&bogus).unwrap_err();
    assert!(err.to_string().contains("modprobe ip_vs_nosuch"), "{err}");
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn broadcast_destination_is_rejected_with_a_hint() {
    let mut c = IpvsClient::connect().unwrap();
    let svc = Service::new(Protocol::Tcp, sa("198.18.0.102:80"), "rr");
    c.add_service(&svc).unwrap();
    let _guard = ServiceGuard(svc.clone());
    // 198.18.1.255 is rs0's broadcast address in `lb`: not unicast.
    let err = c
        .add_dest(
            &svc,
            &Destination::new(sa("198.18.1.255:80"), Forward::Masq),
        )
        .unwrap_err();
    assert!(
        matches!(err, IpvsError::DestinationRejected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not unicast"), "{err}");
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn unconfigured_namespace_rejects_every_destination() {
    // A thread in a brand-new network namespace: lo down, no address, no
    // local routing table. This is the "configure the links first" case.
    let err = std::thread::spawn(|| {
        // SAFETY: unshare only affects this thread, which exits afterwards.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let mut c = IpvsClient::connect().unwrap();
        let svc = Service::new(Protocol::Tcp, sa("198.18.0.100:80"), "rr");
        c.add_service(&svc).unwrap();
        c.add_dest(&svc, &Destination::new(sa("198.18.1.10:80"), Forward::Masq))
            .unwrap_err()
    })
    .join()
    .unwrap();
    assert!(
        matches!(err, IpvsError::DestinationRejected { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("configure its links first"),
        "{err}"
    );
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn sync_daemon_master_reads_back() {
    let mut c = IpvsClient::connect().unwrap();
    let daemon = SyncDaemon::new(DaemonRole::Master, "sync0", 7);
    c.start_daemon(&daemon).unwrap();
    let running = c.daemons();
    let shown = ipvsadm(&["-L", "--daemon"]);
    // Stop before asserting, so a failure does not leave it running.
    c.stop_daemon(DaemonRole::Master).unwrap();

    let running = running.unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    let d = &running[0];
    assert_eq!(
        (d.role, d.ifname.as_str(), d.sync_id),
        (DaemonRole::Master, "sync0", 7)
    );
    assert!(
        shown.contains("master sync daemon (mcast=sync0, syncid=7"),
        "{shown}"
    );
    assert!(c.daemons().unwrap().is_empty());
    assert!(matches!(
        c.stop_daemon(DaemonRole::Master),
        Err(IpvsError::DaemonNotRunning { .. })
    ));
    assert!(matches!(
        c.start_daemon(&SyncDaemon::new(DaemonRole::Backup, "nosuch0", 7)),
        Err(IpvsError::NoSuchInterface { .. })
    ));
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn timeouts_set_and_read_back() {
    let mut c = IpvsClient::connect().unwrap();
    let before = c.timeouts().unwrap();
    // "Timeout (tcp tcpfin udp): 900 120 300"
    let shown = ipvsadm(&["-L", "--timeout"]);
    assert!(
        shown.contains(&format!("{} {} {}", before.tcp, before.tcp_fin, before.udp)),
        "{shown} vs {before:?}"
    );
    let wanted = ipvs::Timeouts {
        tcp: 1800,
        tcp_fin: 60,
        udp: 120,
    };
    c.set_timeouts(&wanted).unwrap();
    let after = c.timeouts().unwrap();
    c.set_timeouts(&before).unwrap();
    assert_eq!(after, wanted);
    assert!(ipvsadm(&["-L", "--timeout"])
        .contains(&format!("{} {} {}", before.tcp, before.tcp_fin, before.udp)));
}
