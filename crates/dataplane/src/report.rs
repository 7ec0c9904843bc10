//! What one apply changed, the same fields for every backend: the desired state's
//! services, servers and SNAT rules added, changed and removed, with the kernel
//! objects each backend touched as its own detail (logs, `status`).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Service, SnatRule};

/// What one apply changed.
///
/// `services`, `servers` and `nat_rules` count, in the desired state's terms, how
/// the new state differs from what the backend held before: IPVS reads its services
/// from the kernel; nft compares with the state it applied last, and on its first
/// apply in a process counts everything as added if the table needed changes and
/// nothing if the kernel already held it (a restart adopting its table). A removed
/// service's servers go with it and are not counted again; an added service's
/// servers count as added. `kernel` is what the backend told the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Balanced services added, changed (address, ports, scheduler, forwarding,
    /// persistence) and removed.
    pub services: Counts,
    /// Real servers added, changed (address, port, weight) and removed.
    pub servers: Counts,
    /// SNAT rules added, changed and removed.
    pub nat_rules: Counts,
    /// The kernel objects the backend changed: the backend's own detail.
    pub kernel: KernelChanges,
    /// Netlink messages sent (0: the kernel was not asked to change).
    pub messages: usize,
    /// Bytes of the nftables batch.
    pub batch_bytes: usize,
    /// Whether the kernel's table had to be read back (first apply, or changed by others).
    pub reread: bool,
    /// Whether a [`ChangeHint`](crate::ChangeHint) spared the comparison of the
    /// services it did not name.
    #[serde(default)]
    pub hint_used: bool,
    /// Wall time of the apply.
    pub duration: Duration,
}

impl ApplyReport {
    /// Kernel objects added, changed or removed (`status`'s `changes`).
    pub fn changes(&self) -> usize {
        self.kernel.total()
    }

    /// Counts one service going from `old` to `new` (either absent).
    pub(crate) fn count_service(&mut self, old: Option<&Service>, new: Option<&Service>) {
        match (old, new) {
            (None, None) => {}
            (None, Some(n)) => {
                self.services.added += 1;
                self.servers.added += n.backends.len();
            }
            (Some(_), None) => self.services.removed += 1,
            (Some(o), Some(n)) => {
                if o == n {
                    return;
                }
                let settings = (o.vip, o.ports, o.protocol, o.scheduler, o.forward)
                    != (n.vip, n.ports, n.protocol, n.scheduler, n.forward)
                    || o.persistence != n.persistence;
                self.services.changed += usize::from(settings);
                self.servers.count(
                    o.backends.iter().map(|b| (b.name.as_str(), b)),
                    n.backends.iter().map(|b| (b.name.as_str(), b)),
                );
            }
        }
    }

    /// Counts every service going from `old` to `new`, matched by name.
    pub(crate) fn count_services<'a>(
        &mut self,
        old: impl IntoIterator<Item = &'a Service>,
        new: &[Service],
    ) {
        let mut old: HashMap<&str, &Service> =
            old.into_iter().map(|s| (s.name.as_str(), s)).collect();
        for n in new {
            let o = old.remove(n.name.as_str());
            self.count_service(o, Some(n));
        }
        for o in old.into_values() {
            self.count_service(Some(o), None);
        }
    }

    /// Counts the SNAT rules going from `old` to `new`, matched by name.
    pub(crate) fn count_snat(&mut self, old: &[SnatRule], new: &[SnatRule]) {
        self.nat_rules.count(
            old.iter().map(|r| (r.name.as_str(), r)),
            new.iter().map(|r| (r.name.as_str(), r)),
        );
    }
}

/// How many objects of one kind were added, changed and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Added.
    pub added: usize,
    /// Changed in place.
    pub changed: usize,
    /// Removed.
    pub removed: usize,
}

impl Counts {
    /// Added, changed and removed together.
    pub fn total(&self) -> usize {
        self.added + self.changed + self.removed
    }

    /// Adds the difference between two named lists.
    fn count<'a, T: PartialEq + 'a>(
        &mut self,
        old: impl Iterator<Item = (&'a str, &'a T)>,
        new: impl Iterator<Item = (&'a str, &'a T)>,
    ) {
        let mut old: HashMap<&str, &T> = old.collect();
        for (name, n) in new {
            match old.remove(name) {
                None => self.added += 1,
                Some(o) if o != n => self.changed += 1,
                Some(_) => {}
            }
        }
        self.removed += old.len();
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{} ~{} -{}", self.added, self.changed, self.removed)
    }
}

/// The kernel objects an apply changed, by backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelChanges {
    /// nftables objects: the nft balancer's table, or the IPVS backend's SNAT table.
    pub nft: NftChanges,
    /// IPVS objects (the IPVS backend).
    pub ipvs: IpvsChanges,
}

impl KernelChanges {
    /// Objects added, changed or removed.
    pub fn total(&self) -> usize {
        self.nft.total() + self.ipvs.services + self.ipvs.destinations
    }
}

impl fmt::Display for KernelChanges {
    /// The non-zero counts, for a log line ("nothing" when there are none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.nft;
        let parts = [
            ("nft table created", usize::from(n.table_created)),
            ("nft chains added", n.chains_added),
            ("nft chains removed", n.chains_removed),
            ("nft sets added", n.sets_added),
            ("nft sets removed", n.sets_removed),
            ("nft elements added", n.elements_added),
            ("nft elements removed", n.elements_removed),
            ("nft rules added", n.rules_added),
            ("nft rules removed", n.rules_removed),
            ("ipvs service operations", self.ipvs.services),
            ("ipvs destination operations", self.ipvs.destinations),
        ];
        let mut any = false;
        for (what, count) in parts.into_iter().filter(|(_, c)| *c > 0) {
            write!(f, "{}{what} {count}", if any { ", " } else { "" })?;
            any = true;
        }
        if !any {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}

/// nftables objects an apply changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftChanges {
    /// The table was created.
    pub table_created: bool,
    /// Base chains created.
    pub chains_added: usize,
    /// Base chains deleted (they had nothing left to do).
    pub chains_removed: usize,
    /// Maps and sets created.
    pub sets_added: usize,
    /// Maps and sets deleted.
    pub sets_removed: usize,
    /// Map or set elements added.
    pub elements_added: usize,
    /// Map or set elements deleted.
    pub elements_removed: usize,
    /// Rules added.
    pub rules_added: usize,
    /// Rules deleted.
    pub rules_removed: usize,
}

impl NftChanges {
    /// Objects added or removed.
    pub fn total(&self) -> usize {
        usize::from(self.table_created)
            + self.chains_added
            + self.chains_removed
            + self.sets_added
            + self.sets_removed
            + self.elements_added
            + self.elements_removed
            + self.rules_added
            + self.rules_removed
    }
}

/// IPVS operations an apply ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsChanges {
    /// Services added, edited or deleted.
    pub services: usize,
    /// Real servers (destinations) added, edited or deleted.
    pub destinations: usize,
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::model::{Backend, Forwarding, NatProtocol, PortSpec, Protocol, Scheduler};
    use crate::SnatSource;

    fn service(name: &str, port: u16, servers: &[(&str, u32)]) -> Service {
        Service {
            name: name.to_owned(),
            vip: "198.18.0.100".parse().unwrap(),
            ports: PortSpec::Single(port),
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Wrr,
            backends: servers
                .iter()
                .enumerate()
                .map(|(i, (name, weight))| Backend {
                    name: (*name).to_owned(),
                    addr: IpAddr::from([198, 18, 1, 20 + i as u8]),
                    port: None,
                    weight: *weight,
                })
                .collect(),
            forward: Forwarding::Nat,
            persistence: None,
        }
    }

    fn snat(name: &str, to: [u8; 4]) -> SnatRule {
        SnatRule {
            name: name.to_owned(),
            in_iface: None,
            out_iface: Some("eth1".to_owned()),
            protocol: NatProtocol::Tcp,
            orig_daddr: "198.18.0.100".parse().unwrap(),
            orig_dports: None,
            source: SnatSource::Address(IpAddr::from(to)),
        }
    }

    #[test]
    fn counts_services_servers_and_snat_rules_by_name() {
        let old = [
            service("web", 80, &[("a", 1), ("b", 1)]),
            service("api", 443, &[("a", 1)]),
            service("gone", 8080, &[("a", 1), ("b", 1), ("c", 1)]),
        ];
        let new = [
            // a's weight and c added; the service's settings unchanged.
            service("web", 80, &[("a", 2), ("b", 1), ("c", 1)]),
            // Another port: the service changed, its server not.
            service("api", 8443, &[("a", 1)]),
            service("new", 9000, &[("a", 1), ("b", 1)]),
        ];
        let mut r = ApplyReport::default();
        r.count_services(&old, &new);
        assert_eq!(
            (r.services, r.servers),
            (
                Counts {
                    added: 1,
                    changed: 1,
                    removed: 1
                },
                // c of web and both of new; a of web; gone's servers go with it.
                Counts {
                    added: 3,
                    changed: 1,
                    removed: 0
                },
            )
        );
        r.count_snat(
            &[
                snat("keep", [198, 18, 1, 100]),
                snat("move", [198, 18, 1, 100]),
            ],
            &[
                snat("keep", [198, 18, 1, 100]),
                snat("move", [198, 18, 1, 101]),
                snat("add", [198, 18, 1, 102]),
            ],
        );
        assert_eq!(
            r.nat_rules,
            Counts {
                added: 1,
                changed: 1,
                removed: 0
            }
        );
        assert_eq!(r.changes(), 0, "kernel objects are the backend's to count");
    }

    #[test]
    fn the_kernel_detail_names_what_changed() {
        let mut k = KernelChanges::default();
        assert_eq!(k.to_string(), "nothing");
        k.nft.elements_added = 2;
        k.ipvs.destinations = 1;
        assert_eq!(
            k.to_string(),
            "nft elements added 2, ipvs destination operations 1"
        );
        assert_eq!(k.total(), 3);
    }
}
