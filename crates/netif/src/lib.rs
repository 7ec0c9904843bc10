//! Kernel interface state through rtnetlink: links, their addresses, and streams of
//! link and address changes, for vrrpd's VIPs and interface tracking.
//!
//! All sockets are opened in the network namespace of the thread that calls
//! [`Netif::connect`] (or a watch), so a thread that entered another namespace with
//! `setns` manages that namespace. Address changes are idempotent and touch only
//! the addresses asked for.

mod address;
mod error;
mod link;
mod quick;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use futures::future::join_all;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, LinkAttribute, LinkMessage,
};
use rtnetlink::MulticastGroup;

pub use address::{
    AddOutcome, AddressEvent, AddressEventKind, AddressSpec, AddressWatch, IfAddrFlags, IfAddress,
    RemoveOutcome,
};
pub use error::NetifError;
pub use link::{Link, LinkEvent, LinkEventKind, LinkWatch, MacAddr, OperState};

use address::{add_message, del_message, same_subnet};
use error::{classify, errno};

/// Longest IPv4 address label the kernel keeps (IFNAMSIZ - 1).
pub const MAX_LABEL: usize = 15;

/// Aborts a spawned connection task when dropped, so a dropped [`Netif`] or watch
/// leaves no task behind.
pub(crate) struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Identity (device, inode) of the calling thread's network namespace.
fn current_netns() -> Option<(u64, u64)> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Starts a netlink connection's I/O task on the current tokio runtime.
fn spawn_connection<F>(connection: F) -> Result<TaskGuard, NetifError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetifError::NoRuntime)?;
    Ok(TaskGuard(runtime.spawn(connection).abort_handle()))
}

/// A connection to the kernel's routing netlink in one network namespace.
///
/// Cheap to clone; clones share the socket, whose task stops when the last is dropped.
#[derive(Clone)]
pub struct Netif {
    handle: rtnetlink::Handle,
    netns: Option<(u64, u64)>,
    quick: Arc<quick::QuickSocket>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for Netif {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netif").field("netns", &self.netns).finish()
    }
}

impl Netif {
    /// Opens a netlink socket in the calling thread's network namespace and spawns its
    /// I/O task on the current tokio runtime.
    pub fn connect() -> Result<Netif, NetifError> {
        // Check first: creating the tokio socket outside a runtime would panic.
        tokio::runtime::Handle::try_current().map_err(|_| NetifError::NoRuntime)?;
        let netns = current_netns();
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(NetifError::Socket)?;
        let task = spawn_connection(connection)?;
        Ok(Netif {
            handle,
            netns,
            quick: Arc::new(quick::QuickSocket::open()),
            _task: Arc::new(task),
        })
    }

    /// The link called `name`.
    pub async fn link_by_name(&self, name: &str) -> Result<Link, NetifError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        let absent = || NetifError::NoSuchLink {
            name: name.to_owned(),
        };
        match found {
            Ok(Some(msg)) => Link::from_message(&msg).ok_or_else(absent),
            Ok(None) => Err(absent()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(absent()),
            Err(e) => Err(classify(
                e,
                || format!("reading link {name}"),
                |source| NetifError::GetLink {
                    link: name.to_owned(),
                    error: source,
                },
            )),
        }
    }

    /// The link with interface index `index`.
    pub async fn link_by_index(&self, index: u32) -> Result<Link, NetifError> {
        let found = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await;
        let absent = || NetifError::NoSuchIndex { index };
        match found {
            Ok(Some(msg)) => Link::from_message(&msg).ok_or_else(absent),
            Ok(None) => Err(absent()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(absent()),
            Err(e) => Err(classify(
                e,
                || format!("reading link #{index}"),
                |source| NetifError::GetLink {
                    link: format!("#{index}"),
                    error: source,
                },
            )),
        }
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, NetifError> {
        dump_links(&self.handle).await
    }

    /// Every IPv4 and IPv6 address on interface `ifindex`, link-local ones included.
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<IfAddress>, NetifError> {
        let iface = self.link_by_index(ifindex).await?.name;
        self.addresses_of(&iface, ifindex).await
    }

    async fn addresses_of(&self, iface: &str, ifindex: u32) -> Result<Vec<IfAddress>, NetifError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
            .map_err(|e| {
                classify(
                    e,
                    || format!("listing addresses of {iface}"),
                    |source| NetifError::ListAddresses {
                        iface: iface.to_owned(),
                        error: source,
                    },
                )
            })?;
        Ok(messages
            .iter()
            .filter_map(IfAddress::from_message)
            .collect())
    }

    /// Adds `addr/prefix_len` to interface `ifindex` (IPv6 without DAD, so usable at
    /// once; IPv4 with an optional label). An address already there is success.
    pub async fn add_address(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
        label: Option<&str>,
    ) -> Result<AddOutcome, NetifError> {
        let spec = AddressSpec {
            ifindex,
            addr,
            prefix_len,
            label: label.map(str::to_owned),
        };
        let mut outcomes = self.add_addresses(std::slice::from_ref(&spec)).await?;
        Ok(outcomes.pop().unwrap_or(AddOutcome::AlreadyPresent))
    }

    /// Removes `addr/prefix_len` from interface `ifindex`. An address not there is
    /// success. Other addresses stay: removing a primary IPv4 address that has
    /// secondaries first enables the interface's `promote_secondaries`, because the
    /// kernel would otherwise delete the secondaries with it.
    pub async fn remove_address(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<RemoveOutcome, NetifError> {
        let spec = AddressSpec::new(ifindex, addr, prefix_len);
        let mut outcomes = self.remove_addresses(std::slice::from_ref(&spec)).await?;
        Ok(outcomes.pop().unwrap_or(RemoveOutcome::Absent))
    }

    /// Adds a set of addresses in one step: all requests go out together on the one
    /// socket, then all answers are awaited. Outcomes are in the order of `set`.
    ///
    /// All or nothing: the set is checked before anything is sent, and if the kernel
    /// refuses any address, those this call added are removed again before the
    /// error (naming interface and address) is returned. Addresses that were
    /// already present are left alone.
    pub async fn add_addresses(&self, set: &[AddressSpec]) -> Result<Vec<AddOutcome>, NetifError> {
        self.add_addresses_known(set, &HashMap::new()).await
    }

    /// [`add_addresses`](Self::add_addresses) for a caller that already knows the
    /// interfaces' names by index (a daemon that watches its links): no lookup
    /// round trip before the adds, which matters on a takeover's path. Indices not
    /// in `known` are looked up; a stale index is still refused by the kernel.
    pub async fn add_addresses_known(
        &self,
        set: &[AddressSpec],
        known: &HashMap<u32, String>,
    ) -> Result<Vec<AddOutcome>, NetifError> {
        let names = self.interface_names_known(set, known).await?;
        for spec in set {
            validate(spec, &names[&spec.ifindex])?;
        }
        // First in one synchronous batch (the kernel adds during the send; no task
        // hand-off); whatever that did not add cleanly (EEXIST, errors, no socket)
        // goes the checked way, which tells a present address from a conflict.
        let quick = self.quick.add(set);
        let results = join_all(set.iter().enumerate().map(|(i, spec)| {
            let done = quick.as_ref().is_some_and(|q| q[i] == 0);
            let name = &names[&spec.ifindex];
            async move {
                if done {
                    tracing::debug!(iface = %name, addr = %spec.addr, prefix_len = spec.prefix_len, "address added");
                    Ok(AddOutcome::Added)
                } else {
                    self.add_checked(name, spec).await
                }
            }
        }))
        .await;
        let mut outcomes = Vec::with_capacity(set.len());
        let mut added: Vec<&AddressSpec> = Vec::new();
        let mut cause = None;
        for (spec, result) in set.iter().zip(results) {
            match result {
                Ok(outcome) => {
                    if outcome == AddOutcome::Added {
                        added.push(spec);
                    }
                    outcomes.push(outcome);
                }
                Err(e) => {
                    cause.get_or_insert(e);
                }
            }
        }
        let Some(cause) = cause else {
            return Ok(outcomes);
        };
        tracing::warn!(error = %cause, rollback = added.len(), "address set add failed, rolling back");
        let left = self.roll_back(&names, &added).await;
        if left.is_empty() {
            Err(cause)
        } else {
            Err(NetifError::RollbackIncomplete {
                cause: Box::new(cause),
                left,
            })
        }
    }

    /// Removes a set of addresses in one step, all requests pipelined. Outcomes are in
    /// the order of `set`. On a failure the other removals still happen (removing is
    /// always toward the goal) and the first error is returned.
    pub async fn remove_addresses(
        &self,
        set: &[AddressSpec],
    ) -> Result<Vec<RemoveOutcome>, NetifError> {
        let names = self.interface_names(set).await?;
        for spec in set {
            check_prefix(spec, &names[&spec.ifindex])?;
        }
        self.keep_secondaries(&names, set.iter()).await?;
        let results = join_all(
            set.iter()
                .map(|s| self.remove_checked(&names[&s.ifindex], s.ifindex, s.addr, s.prefix_len)),
        )
        .await;
        results.into_iter().collect()
    }

    /// Watches every link: first a snapshot of all links, then changes of name,
    /// admin state or carrier (RTNLGRP_LINK), on a socket of its own. Subscribes
    /// before taking the snapshot so that no change falls between the two.
    pub async fn watch_links(&self) -> Result<LinkWatch, NetifError> {
        self.check_netns()?;
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(NetifError::Socket)?;
        let task = spawn_connection(connection)?;
        let snapshot = dump_links(&handle).await?;
        Ok(LinkWatch::new(snapshot, messages, handle, task))
    }

    /// Watches IPv4 and IPv6 address additions and removals on every interface
    /// (RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR), on a socket of its own.
    pub async fn watch_addresses(&self) -> Result<AddressWatch, NetifError> {
        self.check_netns()?;
        let (connection, handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(NetifError::Socket)?;
        let task = spawn_connection(connection)?;
        Ok(AddressWatch::new(messages, handle, task))
    }

    /// A watch socket is created in the calling thread's namespace: refuse if that is
    /// not the namespace this connection manages.
    fn check_netns(&self) -> Result<(), NetifError> {
        match (self.netns, current_netns()) {
            (Some(ours), Some(now)) if ours != now => Err(NetifError::NamespaceChanged),
            _ => Ok(()),
        }
    }

    /// Name of each interface `set` refers to, failing on an index that is gone.
    async fn interface_names(
        &self,
        set: &[AddressSpec],
    ) -> Result<HashMap<u32, String>, NetifError> {
        self.interface_names_known(set, &HashMap::new()).await
    }

    /// The names of the set's interfaces, from `known` where it has them.
    async fn interface_names_known(
        &self,
        set: &[AddressSpec],
        known: &HashMap<u32, String>,
    ) -> Result<HashMap<u32, String>, NetifError> {
        let mut names = HashMap::new();
        for spec in set {
            if let Entry::Vacant(slot) = names.entry(spec.ifindex) {
                let name = match known.get(&spec.ifindex) {
                    Some(name) => name.clone(),
                    None => self.link_by_index(spec.ifindex).await?.name,
                };
                slot.insert(name);
            }
        }
        Ok(names)
    }

    /// One RTM_NEWADDR for a validated spec; EEXIST is success when the address is
    /// there with the same prefix length.
    async fn add_checked(&self, iface: &str, spec: &AddressSpec) -> Result<AddOutcome, NetifError> {
        let mut request = self
            .handle
            .address()
            .add(spec.ifindex, spec.addr, spec.prefix_len);
        *request.message_mut() = add_message(spec);
        let (addr, prefix_len) = (spec.addr, spec.prefix_len);
        let error = match request.execute().await {
            Ok(()) => {
                tracing::debug!(iface, %addr, prefix_len, "address added");
                return Ok(AddOutcome::Added);
            }
            Err(e) => e,
        };
        match errno(&error) {
            Some(libc::EEXIST) => {
                let present = self.addresses_of(iface, spec.ifindex).await?;
                if present.iter().any(|a| a.is(addr, prefix_len)) {
                    return Ok(AddOutcome::AlreadyPresent);
                }
                if let Some(other) = present.iter().find(|a| a.addr == addr) {
                    return Err(NetifError::PrefixConflict {
                        iface: iface.to_owned(),
                        addr,
                        prefix_len,
                        existing: other.prefix_len,
                    });
                }
            }
            Some(libc::ENODEV) => {
                return Err(NetifError::NoSuchIndex {
                    index: spec.ifindex,
                })
            }
            _ => {}
        }
        Err(classify(
            error,
            || format!("adding {addr}/{prefix_len} to {iface}"),
            |source| NetifError::AddAddress {
                iface: iface.to_owned(),
                addr,
                prefix_len,
                error: source,
            },
        ))
    }

    /// One RTM_DELADDR matching exactly `addr/prefix_len`; EADDRNOTAVAIL is success.
    async fn remove_checked(
        &self,
        iface: &str,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<RemoveOutcome, NetifError> {
        let request = self
            .handle
            .address()
            .del(del_message(ifindex, addr, prefix_len));
        let error = match request.execute().await {
            Ok(()) => {
                tracing::debug!(iface, %addr, prefix_len, "address removed");
                return Ok(RemoveOutcome::Removed);
            }
            Err(e) => e,
        };
        match errno(&error) {
            Some(libc::EADDRNOTAVAIL) => Ok(RemoveOutcome::Absent),
            Some(libc::ENODEV) => Err(NetifError::NoSuchIndex { index: ifindex }),
            _ => Err(classify(
                error,
                || format!("removing {addr}/{prefix_len} from {iface}"),
                |source| NetifError::RemoveAddress {
                    iface: iface.to_owned(),
                    addr,
                    prefix_len,
                    error: source,
                },
            )),
        }
    }

    /// The kernel deletes an IPv4 primary's secondaries with it unless
    /// `promote_secondaries` is on: turn it on where a removal would do that.
    async fn keep_secondaries<'a>(
        &self,
        names: &HashMap<u32, String>,
        removals: impl Iterator<Item = &'a AddressSpec>,
    ) -> Result<(), NetifError> {
        let mut by_iface: HashMap<u32, Vec<&AddressSpec>> = HashMap::new();
        for spec in removals.filter(|s| s.addr.is_ipv4()) {
            by_iface.entry(spec.ifindex).or_default().push(spec);
        }
        for (ifindex, targets) in by_iface {
            let iface = &names[&ifindex];
            let present = self.addresses_of(iface, ifindex).await?;
            let cascades = targets.iter().any(|t| {
                let primary = present
                    .iter()
                    .any(|a| a.is(t.addr, t.prefix_len) && !a.flags.is_secondary());
                primary
                    && present.iter().any(|a| {
                        a.flags.is_secondary()
                            && a.prefix_len == t.prefix_len
                            && same_subnet(a.addr, t.addr, t.prefix_len)
                    })
            });
            if cascades {
                self.promote_secondaries(iface, ifindex).await?;
            }
        }
        Ok(())
    }

    async fn promote_secondaries(&self, iface: &str, ifindex: u32) -> Result<(), NetifError> {
        let mut conf = InetDevConf::default();
        conf.promote_secondaries = 1;
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::DevConfRequest(conf),
            ])]));
        self.handle.link().set(msg).execute().await.map_err(|e| {
            classify(
                e,
                || format!("enabling promote_secondaries on {iface}"),
                |source| NetifError::PromoteSecondaries {
                    iface: iface.to_owned(),
                    error: source,
                },
            )
        })?;
        tracing::info!(
            iface,
            "enabled promote_secondaries so that removing a primary address keeps its secondaries"
        );
        Ok(())
    }

    /// Removes what a failed set add added; returns `addr/len on iface` of each
    /// address it could not remove.
    async fn roll_back(&self, names: &HashMap<u32, String>, added: &[&AddressSpec]) -> Vec<String> {
        let describe =
            |s: &AddressSpec| format!("{}/{} on {}", s.addr, s.prefix_len, names[&s.ifindex]);
        if let Err(e) = self.keep_secondaries(names, added.iter().copied()).await {
            tracing::error!(error = %e, "rollback: cannot protect secondaries; not removing");
            return added.iter().map(|s| describe(s)).collect();
        }
        let results = join_all(
            added
                .iter()
                .map(|s| self.remove_checked(&names[&s.ifindex], s.ifindex, s.addr, s.prefix_len)),
        )
        .await;
        added
            .iter()
            .zip(results)
            .filter_map(|(s, r)| match r {
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %e, "rollback: address left behind");
                    Some(describe(s))
                }
            })
            .collect()
    }
}

async fn dump_links(handle: &rtnetlink::Handle) -> Result<Vec<Link>, NetifError> {
    let messages: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| classify(e, || "listing links".to_owned(), NetifError::ListLinks))?;
    Ok(messages.iter().filter_map(Link::from_message).collect())
}

fn check_prefix(spec: &AddressSpec, iface: &str) -> Result<(), NetifError> {
    let max = if spec.addr.is_ipv4() { 32 } else { 128 };
    if spec.prefix_len > max {
        return Err(NetifError::InvalidPrefixLength {
            iface: iface.to_owned(),
            addr: spec.addr,
            prefix_len: spec.prefix_len,
        });
    }
    Ok(())
}

/// Checks a spec before anything is sent, so that a bad set changes nothing.
fn validate(spec: &AddressSpec, iface: &str) -> Result<(), NetifError> {
    check_prefix(spec, iface)?;
    let addr = spec.addr;
    let unicast = match addr {
        IpAddr::V4(a) => !a.is_multicast() && !a.is_unspecified() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_multicast() && !a.is_unspecified(),
    };
    if !unicast {
        return Err(NetifError::NotUnicast {
            iface: iface.to_owned(),
            addr,
        });
    }
    let Some(label) = &spec.label else {
        return Ok(());
    };
    type LabelError = fn(String, IpAddr, String) -> NetifError;
    let failure: Option<LabelError> = if addr.is_ipv6() {
        Some(|iface, addr, label| NetifError::LabelOnIpv6 { iface, addr, label })
    } else if label.len() > MAX_LABEL {
        Some(|iface, addr, label| NetifError::LabelTooLong { iface, addr, label })
    } else if !label.starts_with(iface) {
        Some(|iface, addr, label| NetifError::LabelPrefix { iface, addr, label })
    } else {
        None
    };
    if let Some(make) = failure {
        return Err(make(iface.to_owned(), addr, label.clone()));
    }
    Ok(())
}
