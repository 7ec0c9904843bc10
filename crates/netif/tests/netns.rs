//! netif against a real kernel, inside lab network namespaces. Every change netif
//! makes is checked with an independent reader: `ip -j addr` / `ip -j link` in the host.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use integration::{HostSpec, Lab, Prefix, Role, Topology};
use netif::{
    AddOutcome, AddressEventKind, AddressSpec, LinkEvent, LinkEventKind, LinkWatch, MacAddr, Netif,
    NetifError, OperState, RemoveOutcome,
};
use serde_json::Value;

/// How long a watch may take to report a change before the test gives up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// One balancer `lb1` with eth0 = 198.18.0.11/24, 2001:db8:0:a::11/64.
fn lab() -> Lab {
    let own = [
        "198.18.0.11/24".parse::<Prefix>().unwrap(),
        "2001:db8:0:a::11/64".parse::<Prefix>().unwrap(),
    ];
    Lab::up(
        Topology::new()
            .bridge("lan")
            .host(HostSpec::new("lb1", Role::Balancer).interface("eth0", "lan", &own)),
    )
    .unwrap()
}

/// Runs `f` to completion on a current-thread runtime on the calling thread.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `addr_info` entries of eth0 as `ip -j addr show dev eth0` prints them in lb1.
fn addr_info(lab: &Lab) -> Vec<Value> {
    let out = lab["lb1"]
        .exec_ok(&["ip", "-j", "addr", "show", "dev", "eth0"])
        .unwrap();
    let links: Vec<Value> = serde_json::from_str(&out).unwrap();
    links[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `addr_info` entries for `addr`.
fn entries(lab: &Lab, addr: &str) -> Vec<Value> {
    addr_info(lab)
        .into_iter()
        .filter(|a| a["local"] == addr)
        .collect()
}

/// `addr/len` of every address on eth0, sorted.
fn prefixes(lab: &Lab) -> Vec<String> {
    let mut all: Vec<String> = lab["lb1"]
        .addresses("eth0")
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    all.sort();
    all
}

/// Next event matching `pred`, or a panic after [`EVENT_TIMEOUT`].
async fn next_event(
    watch: &mut LinkWatch,
    what: &str,
    pred: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    let found = tokio::time::timeout(EVENT_TIMEOUT, async {
        while let Some(event) = watch.next().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        Ok(None) => panic!("link watch ended before {what}"),
        Err(_) => panic!("no link event for {what} within {EVENT_TIMEOUT:?}"),
    }
}

#[test]
fn link_by_name_reads_the_namespace_interface() {
    if !integration::have_root("link_by_name_reads_the_namespace_interface") {
        return;
    }
    let lab = lab();
    let want = lab["lb1"].link("eth0").unwrap();
    let (link, missing) = lab["lb1"]
        .run_in(|| {
            block_on(async {
                let netif = Netif::connect().unwrap();
                let link = netif.link_by_name("eth0").await.unwrap();
                (link, netif.link_by_name("nosuch0").await)
            })
        })
        .unwrap();
    assert_eq!(link.name, "eth0");
    // Host side MAC of the first interface of host #1: only lb1's namespace has it.
    assert_eq!(link.mac, Some(MacAddr([2, 0, 0, 0, 1, 0])));
    assert_eq!(link.mac.map(|m| m.to_string()), Some(want.mac));
    assert_eq!(link.mtu, want.mtu);
    assert_eq!(link.oper_state, OperState::Up);
    assert_eq!(want.operstate, "UP");
    assert_eq!((link.up, link.carrier), (want.up, want.carrier));
    assert!(link.up && link.carrier);
    assert!(matches!(missing, Err(NetifError::NoSuchLink { name }) if name == "nosuch0"));
}

#[test]
fn labelled_vip_is_added_once_and_removed_once() {
    if !integration::have_root("labelled_vip_is_added_once_and_removed_once") {
        return;
    }
    let lab = lab();
    let vip = ip("198.18.0.100");
    lab["lb1"]
        .run_in(|| {
            block_on(async {
                let netif = Netif::connect().unwrap();
                let eth0 = netif.link_by_name("eth0").await.unwrap().index;

                let first = netif
                    .add_address(eth0, vip, 32, Some("eth0:vip"))
                    .await
                    .unwrap();
                assert_eq!(first, AddOutcome::Added);
                let shown = entries(&lab, "198.18.0.100");
                assert_eq!(shown.len(), 1, "{shown:?}");
                assert_eq!(shown[0]["prefixlen"], 32);
                assert_eq!(shown[0]["label"], "eth0:vip");
                let read = netif.addresses(eth0).await.unwrap();
                let ours = read.iter().find(|a| a.is(vip, 32)).unwrap();
                assert_eq!(ours.label.as_deref(), Some("eth0:vip"));

                let again = netif
                    .add_address(eth0, vip, 32, Some("eth0:vip"))
                    .await
                    .unwrap();
                assert_eq!(again, AddOutcome::AlreadyPresent);
                assert_eq!(entries(&lab, "198.18.0.100").len(), 1);

                let removed = netif.remove_address(eth0, vip, 32).await.unwrap();
                assert_eq!(removed, RemoveOutcome::Removed);
                assert!(entries(&lab, "198.18.0.100").is_empty());

                let absent = netif.remove_address(eth0, vip, 32).await.unwrap();
                assert_eq!(absent, RemoveOutcome::Absent);
                // The interface's own address never moved.
                assert_eq!(entries(&lab, "198.18.0.11").len(), 1);
            })
        })
        .unwrap();
}

#[test]
fn ipv6_vip_is_usable_at_once() {
    if !integration::have_root("ipv6_vip_is_usable_at_once") {
        return;
    }
    let lab = lab();
    let host = &lab["lb1"];
    // The lab turns DAD off; turn it on (and make it last) so that an address added
    // without nodad visibly stays tentative.
    host.set_sysctl("net.ipv6.conf.eth0.accept_dad", "1")
        .unwrap();
    host.set_sysctl("net.ipv6.conf.eth0.dad_transmits", "60")
        .unwrap();
    host.exec_ok(&["ip", "addr", "add", "2001:db8:0:a::200/64", "dev", "eth0"])
        .unwrap();
    let control = entries(&lab, "2001:db8:0:a::200");
    assert_eq!(
        control[0]["tentative"], true,
        "DAD not in force: {control:?}"
    );

    let flags = host
        .run_in(|| {
            block_on(async {
                let netif = Netif::connect().unwrap();
                let eth0 = netif.link_by_name("eth0").await.unwrap().index;
                let vip = ip("2001:db8:0:a::100");
                let outcome = netif.add_address(eth0, vip, 64, None).await.unwrap();
                assert_eq!(outcome, AddOutcome::Added);
                let read = netif.addresses(eth0).await.unwrap();
                read.iter().find(|a| a.is(vip, 64)).unwrap().flags
            })
        })
        .unwrap();
    assert!(flags.is_nodad() && !flags.is_tentative(), "{flags:?}");
    let shown = entries(&lab, "2001:db8:0:a::100");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["prefixlen"], 64);
    assert_eq!(shown[0]["nodad"], true);
    assert_ne!(shown[0]["tentative"], true, "{shown:?}");
}

#[test]
fn labels_are_checked_before_anything_is_added() {
    if !integration::have_root("labels_are_checked_before_anything_is_added") {
        return;
    }
    let lab = lab();
    let before = prefixes(&lab);
    let (too_long, wrong_prefix, on_v6) = lab["lb1"]
        .run_in(|| {
            block_on(async {
                let netif = Netif::connect().unwrap();
                let eth0 = netif.link_by_name("eth0").await.unwrap().index;
                let good = AddressSpec::new(eth0, ip("198.18.0.101"), 32);
                let set = |bad: AddressSpec| vec![good.clone(), bad];
                let too_long = netif
                    .add_addresses(&set(AddressSpec::new(eth0, ip("198.18.0.102"), 32)
                        .with_label("eth0:longerthan15")))
                    .await;
                let wrong_prefix = netif
                    .add_addresses(&set(
                        AddressSpec::new(eth0, ip("198.18.0.102"), 32).with_label("eth1:vip")
                    ))
                    .await;
                let on_v6 = netif
                    .add_address(eth0, ip("2001:db8:0:a::102"), 64, Some("eth0:v6"))
                    .await;
                (too_long, wrong_prefix, on_v6)
            })
        })
        .unwrap();
    assert!(
        matches!(&too_long, Err(NetifError::LabelTooLong { iface, label, .. })
            if iface == "eth0" && label == "eth0:longerthan15"),
        "{too_long:?}"
    );
    assert!(
        matches!(&wrong_prefix, Err(NetifError::LabelPrefix { .. })),
        "{wrong_prefix:?}"
    );
    assert!(
        matches!(&on_v6, Err(NetifError::LabelOnIpv6 { .. })),
        "{on_v6:?}"
    );
    assert_eq!(prefixes(&lab), before);
}

#[test]
fn set_on_a_vanished_interface_adds_nothing() {
    if !integration::have_root("set_on_a_vanished_interface_adds_nothing") {
        return;
    }
    let lab = lab();
    let host = &lab["lb1"];
    host.exec_ok(&[
        "ip", "link", "add", "gone0", "type", "veth", "peer", "name", "gone1",
    ])
    .unwrap();
    let before = prefixes(&lab);
    let (gone, result) = host
        .run_in(|| {
            block_on(async {
                let netif = Netif::connect().unwrap();
                let eth0 = netif.link_by_name("eth0").await.unwrap().index;
                let gone = netif.link_by_name("gone0").await.unwrap().index;
                host.exec_ok(&["ip", "link", "del", "gone0"]).unwrap();
                let set = [
                    AddressSpec::new(eth0, ip("198.18.0.101"), 32),
                    AddressSpec::new(gone, ip("198.18.0.103"), 32),
                    AddressSpec::new(eth0, ip("2001:db8:0:a::101"), 128),
                ];
                (gone, netif.add_addresses(&set).await)
            })
        })
        .unwrap();
    assert!(
        matches!(result, Err(NetifError::NoSuchIndex { index }) if index == gone),
        "{result:?}"
    );
    assert_eq!(prefixes(&lab), before);
}

#[test]
fn set_refused_by_the_kernel_is_rolled_back() {
    if !integration::have_root("set_refused_by_the_kernel_is_rolled_back") {
        return;
    }
    let lab = lab();
    let host = &lab["lb1"];
    // With IPv6 disabled on eth0 the kernel refuses (EACCES) the IPv6 member of the
    // set, while the IPv4 members, sent in the same batch, go in.
    host.set_sysctl("net.ipv6.conf.eth0.disable_ipv6", "1")
        .unwrap();
    let before = prefixes(&lab);
    let result = host
        .run_in(|| {
            block_on(async {
                let netif = Netif::connect().unwrap();
                let eth0 = netif.link_by_name("eth0").await.unwrap().index;
                let set = [
                    AddressSpec::new(eth0, ip("198.18.0.101"), 32).with_label("eth0:a"),
                    AddressSpec::new(eth0, ip("198.18.0.102"), 24),
                    // Already there: not this call's to remove on rollback.
                    AddressSpec::new(eth0, ip("198.18.0.11"), 24),
                    AddressSpec::new(eth0, ip("2001:db8:0:a::101"), 128),
                ];
                netif.add_addresses(&set).await
            })
        })
        .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(&err, NetifError::AddAddress { iface, addr, prefix_len: 128, .. }
            if iface == "eth0" && *addr == ip("2001:db8:0:a::101")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("eth0") && text.contains("2001:db8:0:a::101"),
        "{text}"
    );
    assert_eq!(prefixes(&lab), before);
    assert_eq!(entries(&lab, "198.18.0.11").len(), 1);
}

#[test]
fn removing_a_primary_keeps_an_address_netif_did_not_add() {
    if !integration::have_root("removing_a_primary_keeps_an_address_netif_did_not_add") {
        return;
    }
    let lab = lab();
    let host = &lab["lb1"];
    host.run_in(|| {
        block_on(async {
            let netif = Netif::connect().unwrap();
            let eth0 = netif.link_by_name("eth0").await.unwrap().index;
            // 198.18.5.1/24 is the first of its subnet: the primary.
            let ours = [
                AddressSpec::new(eth0, ip("198.18.5.1"), 24),
                AddressSpec::new(eth0, ip("2001:db8:0:5::1"), 64),
            ];
            let added = netif.add_addresses(&ours).await;
            assert_eq!(added.unwrap(), [AddOutcome::Added, AddOutcome::Added]);
            // Someone else's addresses: a secondary in the same subnet, and an IPv6 one
            // in the same prefix.
            host.exec_ok(&["ip", "addr", "add", "198.18.5.2/24", "dev", "eth0"])
                .unwrap();
            host.exec_ok(&[
                "ip",
                "addr",
                "add",
                "2001:db8:0:5::2/64",
                "dev",
                "eth0",
                "nodad",
            ])
            .unwrap();
            assert_eq!(entries(&lab, "198.18.5.2")[0]["secondary"], true);
            let before = prefixes(&lab);

            let remove = [
                AddressSpec::new(eth0, ip("198.18.5.1"), 24),
                AddressSpec::new(eth0, ip("2001:db8:0:5::1"), 64),
                AddressSpec::new(eth0, ip("198.18.0.199"), 32),
            ];
            let removed = netif.remove_addresses(&remove).await;
            assert_eq!(
                removed.unwrap(),
                [
                    RemoveOutcome::Removed,
                    RemoveOutcome::Removed,
                    RemoveOutcome::Absent
                ]
            );
            let expected: Vec<String> = before
                .into_iter()
                .filter(|p| p != "198.18.5.1/24" && p != "2001:db8:0:5::1/64")
                .collect();
            assert_eq!(prefixes(&lab), expected);
            assert_eq!(entries(&lab, "198.18.5.2").len(), 1);
        })
    })
    .unwrap();
}

#[test]
fn link_watch_reports_carrier_and_admin_state() {
    if !integration::have_root("link_watch_reports_carrier_and_admin_state") {
        return;
    }
    let lab = lab();
    let host = &lab["lb1"];
    host.run_in(|| {
        block_on(async {
            let netif = Netif::connect().unwrap();
            let mut watch = netif.watch_links().await.unwrap();
            let start = next_event(&mut watch, "eth0 in the snapshot", |e| e.name == "eth0").await;
            assert_eq!(start.kind, LinkEventKind::Snapshot);
            assert!(start.up && start.carrier, "{start:?}");
            let eth0 = start.index;

            lab.set_cable("lb1", "eth0", false).unwrap();
            let lost = next_event(&mut watch, "carrier loss", |e| {
                e.index == eth0 && !e.carrier
            })
            .await;
            assert_eq!(lost.kind, LinkEventKind::Changed);
            assert!(lost.up, "cable pulled, link still admin up: {lost:?}");
            assert!(!host.link("eth0").unwrap().carrier);

            lab.set_cable("lb1", "eth0", true).unwrap();
            let back =
                next_event(&mut watch, "carrier back", |e| e.index == eth0 && e.carrier).await;
            assert!(back.up);

            host.set_link("eth0", false).unwrap();
            let down = next_event(&mut watch, "admin down", |e| e.index == eth0 && !e.up).await;
            assert!(!down.carrier);
            assert_eq!(down.name, "eth0");
        })
    })
    .unwrap();
}

#[test]
fn address_watch_sees_a_vip_removed_behind_its_back() {
    if !integration::have_root("address_watch_sees_a_vip_removed_behind_its_back") {
        return;
    }
    let lab = lab();
    let host = &lab["lb1"];
    host.run_in(|| {
        block_on(async {
            let netif = Netif::connect().unwrap();
            let eth0 = netif.link_by_name("eth0").await.unwrap().index;
            let mut watch = netif.watch_addresses().await.unwrap();
            let vip = ip("198.18.0.100");
            netif.add_address(eth0, vip, 32, None).await.unwrap();
            host.exec_ok(&["ip", "addr", "del", "198.18.0.100/32", "dev", "eth0"])
                .unwrap();
            let mut seen = Vec::new();
            let found = tokio::time::timeout(EVENT_TIMEOUT, async {
                while let Some(e) = watch.next().await {
                    let done = e.kind == AddressEventKind::Deleted;
                    if e.address.is(vip, 32) && e.address.ifindex == eth0 {
                        seen.push(e.kind);
                        if done {
                            return true;
                        }
                    }
                }
                false
            })
            .await;
            assert_eq!(found, Ok(true), "events seen: {seen:?}");
            assert_eq!(seen, [AddressEventKind::New, AddressEventKind::Deleted]);
        })
    })
    .unwrap();
}

#[test]
fn connect_outside_a_runtime_is_an_error() {
    assert!(matches!(Netif::connect(), Err(NetifError::NoRuntime)));
}

#[test]
fn socket_stays_in_the_namespace_it_was_opened_in() {
    if !integration::have_root("socket_stays_in_the_namespace_it_was_opened_in") {
        return;
    }
    let lab = lab();
    // The runtime lives on the test thread (root namespace); only connect runs in lb1.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    let netif = lab["lb1"]
        .run_in(move || {
            let _entered = handle.enter();
            Netif::connect().unwrap()
        })
        .unwrap();
    runtime.block_on(async {
        // Queried from the root namespace, answered about lb1's eth0.
        let link = netif.link_by_name("eth0").await.unwrap();
        assert_eq!(link.mac, Some(MacAddr([2, 0, 0, 0, 1, 0])));
        // A watch would open its socket here, in the wrong namespace: refused.
        let watch = netif.watch_links().await;
        assert!(
            matches!(watch, Err(NetifError::NamespaceChanged)),
            "{:?}",
            watch.err()
        );
    });
}

#[test]
fn unprivileged_change_names_the_missing_capability() {
    if !integration::have_root("unprivileged_change_names_the_missing_capability") {
        return;
    }
    let lab = lab();
    let before = prefixes(&lab);
    let result = lab["lb1"]
        .run_in(|| {
            // The raw syscall changes this thread's credentials only (glibc's wrapper
            // would change every thread's); leaving uid 0 drops CAP_NET_ADMIN.
            // SAFETY: plain syscall with integer arguments; the thread ends after.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
            block_on(async {
                let netif = Netif::connect().unwrap();
                let eth0 = netif.link_by_name("eth0").await.unwrap().index;
                netif.add_address(eth0, ip("198.18.0.100"), 32, None).await
            })
        })
        .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(err, NetifError::PermissionDenied { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("CAP_NET_ADMIN") && text.contains("198.18.0.100/32") && text.contains("eth0"),
        "{text}"
    );
    assert_eq!(prefixes(&lab), before);
}
