//! The plain configuration a [`Router`](crate::router::Router) is built
//! from. The daemon translates cluster.toml into this; the crate does not
//! depend on the config crate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::packet::{Auth, Version};
use crate::timer::{micros, micros_opt};

/// Every instance and sync group of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// The VRRP instances, in the order their actions are emitted.
    pub instances: Vec<InstanceConfig>,
    /// Sync groups; an instance is in at most one.
    #[serde(default)]
    pub sync_groups: Vec<SyncGroupConfig>,
}

/// One virtual router on one interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Unique name; actions and inputs refer to the instance by it.
    pub name: String,
    /// The interface the instance runs on (adverts, VIPs, GARPs).
    pub interface: String,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Protocol version; v2 is IPv4 only.
    #[serde(default = "default_version")]
    pub version: Version,
    /// Configured priority, 1..=255; 255 means address owner.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Advertisement_Interval in centiseconds (v3: 1..=4095; v2: whole
    /// seconds, 100..=25500).
    #[serde(default = "default_interval")]
    pub advert_interval_cs: u16,
    /// This node's own (primary) address on the interface: the advert source
    /// and the tie-break key. IPv6: the link-local address.
    pub primary_address: IpAddr,
    /// The virtual addresses, all of one family (the first one link-local
    /// for IPv6, RFC 9568 §5.2.9).
    pub virtual_addresses: Vec<IpAddr>,
    /// Preempt_Mode: a higher-priority backup takes over from a lower
    /// priority master. The owner (255) always preempts.
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// After start-up or leaving FAULT/MAINTENANCE, the instance does not
    /// preempt for this long (keepalived `preempt_delay`).
    #[serde(default, with = "micros", rename = "preempt_delay_us")]
    pub preempt_delay: Duration,
    /// Accept_Mode: a non-owner master accepts packets addressed to the VIPs.
    #[serde(default)]
    pub accept_mode: bool,
    /// Send adverts to these peers by unicast instead of to the multicast
    /// group.
    #[serde(default)]
    pub unicast_peers: Vec<IpAddr>,
    /// Interfaces whose state changes this instance's priority or puts it in
    /// FAULT.
    #[serde(default)]
    pub track_interfaces: Vec<TrackedInterface>,
    /// v2 authentication (type 0 or 1); must be `None` for v3.
    #[serde(default = "default_auth")]
    pub auth: Auth,
    /// Gratuitous ARP / unsolicited NA on taking over.
    #[serde(default)]
    pub gratuitous: GratuitousConfig,
    /// A Master_Down_Timer that fires more than half an advert interval late
    /// (this router was held up: a stalled machine, a throttled VM) waits one
    /// more Master_Adver_Interval, once, for the adverts the same stall held up.
    /// Off: the RFC's timer exactly.
    #[serde(default = "default_true")]
    pub late_timer_grace: bool,
}

/// A tracked interface and what its being down costs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackedInterface {
    /// Interface name.
    pub interface: String,
    /// Added to the priority while the interface is down (usually negative);
    /// 0 means "down puts the instance in FAULT".
    #[serde(default)]
    pub weight: i16,
}

/// The gratuitous ARP / unsolicited NA burst sent on becoming master.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GratuitousConfig {
    /// Rounds per burst: each round announces every VIP once.
    #[serde(default = "default_garp_count")]
    pub count: u8,
    /// Pause between rounds.
    #[serde(default, with = "micros", rename = "spacing_us")]
    pub spacing: Duration,
    /// Repeat the burst once this long after taking over (keepalived's
    /// default is 5 s); `None` sends one burst.
    #[serde(default, with = "micros_opt", rename = "repeat_after_us")]
    pub repeat_after: Option<Duration>,
}

impl Default for GratuitousConfig {
    fn default() -> Self {
        GratuitousConfig {
            count: default_garp_count(),
            spacing: Duration::ZERO,
            repeat_after: None,
        }
    }
}

/// Instances that move together (DESIGN: "A sync group moves as one").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroupConfig {
    /// Group name.
    pub name: String,
    /// Member instance names, in the order actions list them.
    pub members: Vec<String>,
}

fn default_version() -> Version {
    Version::V3
}
fn default_priority() -> u8 {
    100
}
fn default_interval() -> u16 {
    100
}
fn default_true() -> bool {
    true
}
fn default_auth() -> Auth {
    Auth::None
}
fn default_garp_count() -> u8 {
    5
}

/// Why a [`RouterConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two instances share a name.
    #[error("instance {0:?} is defined twice")]
    DuplicateInstance(String),
    /// VRID 0 is not a valid virtual router id.
    #[error("instance {0:?}: vrid must be 1..=255")]
    VridZero(String),
    /// Priority 0 is reserved for the master's release advert.
    #[error("instance {0:?}: priority must be 1..=255 (0 is reserved for release)")]
    PriorityZero(String),
    /// An instance needs at least one virtual address.
    #[error("instance {0:?}: no virtual addresses")]
    NoVirtualAddresses(String),
    /// An advert carries at most 255 addresses.
    #[error("instance {0:?}: more than 255 virtual addresses")]
    TooManyAddresses(String),
    /// IPv4 and IPv6 virtual addresses in one instance.
    #[error("instance {0:?}: virtual addresses mix IPv4 and IPv6 (use one instance per family)")]
    MixedFamilies(String),
    /// The primary address is of another family than the VIPs.
    #[error("instance {0:?}: primary address family differs from the virtual addresses'")]
    PrimaryFamily(String),
    /// A unicast peer is of another family than the VIPs.
    #[error("instance {instance:?}: unicast peer {peer} is of another address family")]
    PeerFamily {
        /// The instance.
        instance: String,
        /// The offending peer.
        peer: IpAddr,
    },
    /// VRRPv2 is IPv4 only.
    #[error("instance {0:?}: VRRPv2 supports IPv4 only (use version 3 for IPv6)")]
    V2Ipv6(String),
    /// The interval is outside what the version can carry.
    #[error(
        "instance {instance:?}: advert interval {interval_cs} cs is out of range \
         (v3: 1..=4095 cs; v2: whole seconds 1..=255)"
    )]
    IntervalOutOfRange {
        /// The instance.
        instance: String,
        /// The interval given.
        interval_cs: u16,
    },
    /// Authentication exists in v2 only.
    #[error("instance {0:?}: authentication is a VRRPv2 feature (RFC 9568 removed it)")]
    AuthOnV3(String),
    /// Two instances with the same VRID and family on one interface.
    #[error("interface {interface:?}: vrid {vrid} is used by two instances of the same family")]
    DuplicateVrid {
        /// The interface.
        interface: String,
        /// The VRID.
        vrid: u8,
    },
    /// Two sync groups share a name.
    #[error("sync group {0:?} is defined twice")]
    DuplicateGroup(String),
    /// A sync group without members.
    #[error("sync group {0:?} has no members")]
    EmptyGroup(String),
    /// A sync group names an instance that does not exist.
    #[error("sync group {group:?}: unknown instance {member:?}")]
    UnknownMember {
        /// The group.
        group: String,
        /// The missing instance.
        member: String,
    },
    /// An instance listed in two groups (or twice in one).
    #[error("instance {0:?} is in more than one sync group")]
    MemberTwice(String),
}

impl RouterConfig {
    /// Checks what the state machine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        let mut vrids = BTreeSet::new();
        for i in &self.instances {
            if !names.insert(i.name.as_str()) {
                return Err(ConfigError::DuplicateInstance(i.name.clone()));
            }
            i.validate()?;
            let family_v6 = i.primary_address.is_ipv6();
            if !vrids.insert((i.interface.as_str(), i.vrid, family_v6)) {
                return Err(ConfigError::DuplicateVrid {
                    interface: i.interface.clone(),
                    vrid: i.vrid,
                });
            }
        }
        let mut groups = BTreeSet::new();
        let mut member_of: BTreeMap<&str, &str> = BTreeMap::new();
        for g in &self.sync_groups {
            if !groups.insert(g.name.as_str()) {
                return Err(ConfigError::DuplicateGroup(g.name.clone()));
            }
            if g.members.is_empty() {
                return Err(ConfigError::EmptyGroup(g.name.clone()));
            }
            for m in &g.members {
                if !names.contains(m.as_str()) {
                    return Err(ConfigError::UnknownMember {
                        group: g.name.clone(),
                        member: m.clone(),
                    });
                }
                if member_of.insert(m.as_str(), g.name.as_str()).is_some() {
                    return Err(ConfigError::MemberTwice(m.clone()));
                }
            }
        }
        Ok(())
    }
}

impl InstanceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let name = || self.name.clone();
        if self.vrid == 0 {
            return Err(ConfigError::VridZero(name()));
        }
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero(name()));
        }
        let Some(first) = self.virtual_addresses.first() else {
            return Err(ConfigError::NoVirtualAddresses(name()));
        };
        if self.virtual_addresses.len() > 255 {
            return Err(ConfigError::TooManyAddresses(name()));
        }
        let v6 = first.is_ipv6();
        if self.virtual_addresses.iter().any(|a| a.is_ipv6() != v6) {
            return Err(ConfigError::MixedFamilies(name()));
        }
        if self.primary_address.is_ipv6() != v6 {
            return Err(ConfigError::PrimaryFamily(name()));
        }
        if let Some(peer) = self.unicast_peers.iter().find(|p| p.is_ipv6() != v6) {
            return Err(ConfigError::PeerFamily {
                instance: name(),
                peer: *peer,
            });
        }
        if !self.version.carries_interval_cs(self.advert_interval_cs) {
            return Err(ConfigError::IntervalOutOfRange {
                instance: name(),
                interval_cs: self.advert_interval_cs,
            });
        }
        match self.version {
            Version::V2 if v6 => return Err(ConfigError::V2Ipv6(name())),
            Version::V3 if self.auth != Auth::None => return Err(ConfigError::AuthOnV3(name())),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str) -> InstanceConfig {
        InstanceConfig {
            name: name.into(),
            interface: "eth0".into(),
            vrid: 1,
            version: Version::V3,
            priority: 100,
            advert_interval_cs: 100,
            primary_address: "198.18.0.1".parse().unwrap(),
            virtual_addresses: vec!["198.18.0.100".parse().unwrap()],
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: false,
            unicast_peers: vec![],
            track_interfaces: vec![],
            auth: Auth::None,
            gratuitous: GratuitousConfig::default(),
            late_timer_grace: true,
        }
    }

    fn check(instances: Vec<InstanceConfig>) -> Result<(), ConfigError> {
        RouterConfig {
            instances,
            sync_groups: vec![],
        }
        .validate()
    }

    #[test]
    fn refuses_each_invalid_instance() {
        assert_eq!(check(vec![instance("a")]), Ok(()));
        let mut i = instance("a");
        i.priority = 0;
        assert_eq!(check(vec![i]), Err(ConfigError::PriorityZero("a".into())));
        let mut i = instance("a");
        i.vrid = 0;
        assert_eq!(check(vec![i]), Err(ConfigError::VridZero("a".into())));
        let mut i = instance("a");
        i.virtual_addresses.clear();
        assert_eq!(
            check(vec![i]),
            Err(ConfigError::NoVirtualAddresses("a".into()))
        );
        let mut i = instance("a");
        i.virtual_addresses.push("2001:db8::1".parse().unwrap());
        assert_eq!(check(vec![i]), Err(ConfigError::MixedFamilies("a".into())));
        let mut i = instance("a");
        i.primary_address = "fe80::1".parse().unwrap();
        assert_eq!(check(vec![i]), Err(ConfigError::PrimaryFamily("a".into())));
        let mut i = instance("a");
        i.version = Version::V2;
        i.advert_interval_cs = 150;
        assert!(matches!(
            check(vec![i]),
            Err(ConfigError::IntervalOutOfRange { .. })
        ));
        let mut i = instance("a");
        i.advert_interval_cs = 4096;
        assert!(matches!(
            check(vec![i]),
            Err(ConfigError::IntervalOutOfRange { .. })
        ));
        let mut i = instance("a");
        i.auth = Auth::SimplePassword(*b"secret12");
        assert_eq!(check(vec![i]), Err(ConfigError::AuthOnV3("a".into())));
        let mut i = instance("a");
        i.version = Version::V2;
        i.primary_address = "fe80::1".parse().unwrap();
        i.virtual_addresses = vec!["fe80::100".parse().unwrap()];
        assert_eq!(check(vec![i]), Err(ConfigError::V2Ipv6("a".into())));
        let mut i = instance("a");
        i.unicast_peers = vec!["2001:db8::2".parse().unwrap()];
        assert!(matches!(
            check(vec![i]),
            Err(ConfigError::PeerFamily { .. })
        ));
    }

    #[test]
    fn refuses_duplicates_and_bad_groups() {
        assert_eq!(
            check(vec![instance("a"), instance("a")]),
            Err(ConfigError::DuplicateInstance("a".into()))
        );
        assert!(matches!(
            check(vec![instance("a"), instance("b")]),
            Err(ConfigError::DuplicateVrid { vrid: 1, .. })
        ));
        let mut b = instance("b");
        b.vrid = 2;
        let group = |members: &[&str]| SyncGroupConfig {
            name: "g".into(),
            members: members.iter().map(|s| s.to_string()).collect(),
        };
        let cfg = |groups| RouterConfig {
            instances: vec![instance("a"), b.clone()],
            sync_groups: groups,
        };
        assert_eq!(cfg(vec![group(&["a", "b"])]).validate(), Ok(()));
        assert_eq!(
            cfg(vec![group(&[])]).validate(),
            Err(ConfigError::EmptyGroup("g".into()))
        );
        assert!(matches!(
            cfg(vec![group(&["a", "c"])]).validate(),
            Err(ConfigError::UnknownMember { .. })
        ));
        assert_eq!(
            cfg(vec![group(&["a", "a"])]).validate(),
            Err(ConfigError::MemberTwice("a".into()))
        );
        assert_eq!(
            cfg(vec![group(&["a"]), group(&["b"])]).validate(),
            Err(ConfigError::DuplicateGroup("g".into()))
        );
    }
}
