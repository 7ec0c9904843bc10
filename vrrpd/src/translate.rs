//! cluster.toml (one node's view) to the state machine's configuration: one
//! [`RouterConfig`] per sync group, plus what only the daemon needs (VIP
//! prefixes and labels, checksum form, GARP refresh).
//!
//! Each sync group gets a `Router` of its own: groups never interact in the
//! state machine, and a group can then be rebuilt on reload without touching
//! the others.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use config::{GroupView, InstanceView, NodeView};
use vrrp::checksum::ChecksumForm;
use vrrp::config::{
    GratuitousConfig, InstanceConfig, RouterConfig, SyncGroupConfig, TrackedInterface,
};
use vrrp::packet::{Auth, Family, Version};

/// Why a node view cannot be run. A variant that wraps another error says its text
/// itself and does not return it as `source()` as well: an `anyhow` chain (`{:#}`)
/// prints it once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// An IPv4 instance whose interface has no IPv4 address on this node.
    #[error("instance {instance:?}: this node has no IPv4 address on {interface} to send adverts from; add one under [[node]] addresses")]
    NoIpv4Source {
        /// The instance.
        instance: String,
        /// Its interface.
        interface: String,
    },
    /// An IPv6 instance whose interface has no link-local address.
    #[error("instance {instance:?}: interface {interface} has no IPv6 link-local address (VRRPv3 sends from it); is IPv6 enabled on {interface}?")]
    NoLinkLocal {
        /// The instance.
        instance: String,
        /// Its interface.
        interface: String,
    },
    /// The state machine refused the translated group.
    #[error("sync group {group:?}: {error}")]
    Router {
        /// The group.
        group: String,
        /// The state machine's reason.
        error: vrrp::config::ConfigError,
    },
}

/// One VIP as it goes on the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipPlan {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// IPv4 label, if configured.
    pub label: Option<String>,
}

/// What the daemon needs of one instance besides the state machine's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlan {
    /// Instance name.
    pub name: String,
    /// Its sync group.
    pub group: String,
    /// Interface of adverts and VIPs.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// Address family of adverts and VIPs.
    pub family: Family,
    /// Checksum form of VRRPv3 over IPv4 adverts.
    pub checksum: ChecksumForm,
    /// VIPs with prefix and label.
    pub vips: Vec<VipPlan>,
    /// Periodic GARP / NA burst while MASTER (daemon-side timer).
    pub garp_refresh: Option<Duration>,
    /// Lowest TTL / hop limit accepted on unicast adverts (daemon-side check).
    pub unicast_min_ttl: u8,
}

/// One sync group: its state machine configuration and the daemon's extras.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Group name.
    pub name: String,
    /// This node's priority for the group.
    pub priority: u8,
    /// The `Router` configuration (the group and its members only).
    pub router: RouterConfig,
    /// Per member, in group order.
    pub instances: Vec<InstancePlan>,
}

impl GroupPlan {
    /// The state machine configuration of member `name`.
    pub fn instance_config(&self, name: &str) -> Option<&InstanceConfig> {
        self.router.instances.iter().find(|i| i.name == name)
    }
}

/// The whole node, group by group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// Sync groups in configured order.
    pub groups: Vec<GroupPlan>,
}

impl Translation {
    /// Every instance plan.
    pub fn instances(&self) -> impl Iterator<Item = &InstancePlan> {
        self.groups.iter().flat_map(|g| g.instances.iter())
    }

    /// The plan of instance `name`.
    pub fn instance(&self, name: &str) -> Option<&InstancePlan> {
        self.instances().find(|i| i.name == name)
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&GroupPlan> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Every interface an instance runs on or tracks.
    pub fn watched_interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for g in &self.groups {
            for i in &g.router.instances {
                names.push(i.interface.clone());
                names.extend(i.track_interfaces.iter().map(|t| t.interface.clone()));
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

/// Translates `view`. `link_local` answers the IPv6 link-local address of an
/// interface (asked only for IPv6 instances).
pub fn translate(
    view: &NodeView,
    link_local: &dyn Fn(&str) -> Option<Ipv6Addr>,
) -> Result<Translation, TranslateError> {
    let groups = view
        .groups
        .iter()
        .map(|g| translate_group(g, view.vrrpd.late_timer_grace, link_local))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Translation { groups })
}

fn translate_group(
    group: &GroupView,
    late_timer_grace: bool,
    link_local: &dyn Fn(&str) -> Option<Ipv6Addr>,
) -> Result<GroupPlan, TranslateError> {
    let mut configs = Vec::new();
    let mut plans = Vec::new();
    for inst in &group.instances {
        let (config, plan) =
            translate_instance(inst, group.priority, late_timer_grace, link_local)?;
        configs.push(config);
        plans.push(plan);
    }
    let router = RouterConfig {
        sync_groups: vec![SyncGroupConfig {
            name: group.name.clone(),
            members: configs.iter().map(|c| c.name.clone()).collect(),
        }],
        instances: configs,
    };
    router.validate().map_err(|error| TranslateError::Router {
        group: group.name.clone(),
        error,
    })?;
    Ok(GroupPlan {
        name: group.name.clone(),
        priority: group.priority,
        router,
        instances: plans,
    })
}

fn translate_instance(
    view: &InstanceView,
    priority: u8,
    late_timer_grace: bool,
    link_local: &dyn Fn(&str) -> Option<Ipv6Addr>,
) -> Result<(InstanceConfig, InstancePlan), TranslateError> {
    let inst = &view.config;
    let v6 = inst.is_ipv6();
    let primary_address = if v6 {
        let addr = link_local(&inst.interface).ok_or_else(|| TranslateError::NoLinkLocal {
            instance: inst.name.clone(),
            interface: inst.interface.clone(),
        })?;
        IpAddr::V6(addr)
    } else {
        view.source_address
            .or_else(|| {
                view.local_addresses
                    .iter()
                    .find(|a| a.is_ipv4())
                    .map(|a| a.address)
            })
            .ok_or_else(|| TranslateError::NoIpv4Source {
                instance: inst.name.clone(),
                interface: inst.interface.clone(),
            })?
    };
    let version = inst.version;
    let auth = match (&inst.auth_pass, version) {
        (Some(pass), Version::V2) => Auth::simple_password(pass),
        _ => Auth::None,
    };
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    let secs = |v: u32| Duration::from_secs(u64::from(v));
    let config = InstanceConfig {
        name: inst.name.clone(),
        interface: inst.interface.clone(),
        vrid: inst.vrid,
        version,
        priority,
        // Validated by the config crate: 10 ms steps, at most 40950 ms.
        advert_interval_cs: u16::try_from(inst.advert_interval_ms / 10).unwrap_or(u16::MAX),
        primary_address,
        virtual_addresses: inst.vips.iter().map(|v| v.address.address).collect(),
        preempt: inst.preempt,
        preempt_delay: ms(inst.preempt_delay_ms),
        accept_mode: inst.accept_mode,
        unicast_peers: view.unicast_peers.clone(),
        track_interfaces: inst
            .track_interfaces
            .iter()
            .map(|t| TrackedInterface {
                interface: t.name.clone(),
                weight: t.weight,
            })
            .collect(),
        auth,
        gratuitous: GratuitousConfig {
            count: u8::try_from(inst.garp.count).unwrap_or(u8::MAX),
            spacing: ms(inst.garp.spacing_ms),
            repeat_after: (inst.garp.repeat_after_s > 0).then(|| secs(inst.garp.repeat_after_s)),
        },
        late_timer_grace,
    };
    let plan = InstancePlan {
        name: inst.name.clone(),
        group: view.group.clone(),
        interface: inst.interface.clone(),
        vrid: inst.vrid,
        family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
        checksum: inst.checksum,
        vips: inst
            .vips
            .iter()
            .map(|v| VipPlan {
                address: v.address.address,
                prefix_len: v.address.prefix_len,
                label: v.label.clone(),
            })
            .collect(),
        garp_refresh: (inst.garp.refresh_s > 0).then(|| secs(inst.garp.refresh_s)),
        unicast_min_ttl: inst.unicast_min_ttl,
    };
    Ok((config, plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let e: anyhow::Error = TranslateError::Router {
            group: "web".into(),
            error: vrrp::config::ConfigError::VridZero("lb1".into()),
        }
        .into();
        let chain = format!("{e:#}");
        assert_eq!(chain.matches("vrid must be").count(), 1, "{chain}");
    }

    fn example() -> config::ClusterConfig {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
        config::load(std::path::Path::new(path)).unwrap()
    }

    fn no_link_local(_: &str) -> Option<Ipv6Addr> {
        None
    }

    #[test]
    fn example_translates_for_lb1() {
        let view = example().node_view(Some("lb1")).unwrap();
        let t = translate(&view, &no_link_local).unwrap();
        assert_eq!(t.groups.len(), 1);
        let g = &t.groups[0];
        assert_eq!(g.name, "edge");
        assert_eq!(g.priority, 150);
        assert_eq!(g.router.sync_groups[0].members, vec!["public", "server"]);
        let public = g.instance_config("public").unwrap();
        assert_eq!(public.priority, 150);
        assert_eq!(public.vrid, 51);
        assert_eq!(public.version, Version::V3);
        assert_eq!(public.advert_interval_cs, 100);
        assert_eq!(
            public.primary_address,
            "198.18.0.11".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            public.virtual_addresses,
            vec!["198.18.0.100".parse::<IpAddr>().unwrap()]
        );
        assert!(public.unicast_peers.is_empty());
        assert_eq!(public.auth, Auth::None);
        assert_eq!(public.gratuitous.count, 5);
        assert_eq!(public.gratuitous.repeat_after, Some(Duration::from_secs(5)));
        let server = g.instance_config("server").unwrap();
        assert_eq!(server.interface, "eth1");
        assert_eq!(
            server.primary_address,
            "198.18.1.11".parse::<IpAddr>().unwrap()
        );
        let plan = t.instance("public").unwrap();
        assert_eq!(plan.checksum, ChecksumForm::PseudoHeader);
        assert_eq!(
            plan.vips,
            vec![VipPlan {
                address: "198.18.0.100".parse().unwrap(),
                prefix_len: 24,
                label: Some("eth0:vip".into()),
            }]
        );
        assert_eq!(plan.garp_refresh, None);
        assert_eq!(t.instance("server").unwrap().vips[0].label, None);
        assert_eq!(t.watched_interfaces(), vec!["eth0", "eth1"]);
    }

    #[test]
    fn lb2_gets_its_own_priority_and_source() {
        let view = example().node_view(Some("lb2")).unwrap();
        let t = translate(&view, &no_link_local).unwrap();
        let public = t.groups[0].instance_config("public").unwrap();
        assert_eq!(public.priority, 100);
        assert_eq!(
            public.primary_address,
            "198.18.0.12".parse::<IpAddr>().unwrap()
        );
        vrrp::router::Router::new(t.groups[0].router.clone()).unwrap();
    }

    fn edited(edits: &[(&str, &str)]) -> config::ClusterConfig {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
        let mut text = std::fs::read_to_string(path).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "example lacks {from:?}");
            text = text.replacen(from, to, 1);
        }
        config::parse(&text, "edited.toml").unwrap()
    }

    #[test]
    fn ipv6_instance_uses_the_link_local_and_v2_gets_its_password() {
        let cluster = edited(&[(
            "instances = [\"public\", \"server\"]\n",
            "instances = [\"public\", \"server\", \"public6\"]\n\
             [[instance]]\nname = \"public6\"\ninterface = \"eth0\"\nvrid = 51\n\
             vips = [\"2001:db8:0:a::100/64\"]\nunicast = true\n",
        )]);
        let view = cluster.node_view(Some("lb1")).unwrap();
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let t = translate(&view, &|iface| (iface == "eth0").then_some(ll)).unwrap();
        let p6 = t.groups[0].instance_config("public6").unwrap();
        assert_eq!(p6.primary_address, IpAddr::V6(ll));
        assert_eq!(
            p6.unicast_peers,
            vec!["2001:db8:0:a::12".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(t.instance("public6").unwrap().family, Family::Ipv6);
        assert_eq!(
            translate(&view, &no_link_local).unwrap_err(),
            TranslateError::NoLinkLocal {
                instance: "public6".into(),
                interface: "eth0".into()
            }
        );

        let cluster = edited(&[
            ("version = 3\n", "version = 2\nauth_pass = \"secret12\"\n"),
            ("advert_interval_ms = 1000\n", "advert_interval_ms = 2000\n"),
            // The checksum form is refused on v2.
            ("checksum = \"pseudo-header\"\n", ""),
        ]);
        let view = cluster.node_view(Some("lb1")).unwrap();
        let t = translate(&view, &no_link_local).unwrap();
        let public = t.groups[0].instance_config("public").unwrap();
        assert_eq!(public.version, Version::V2);
        assert_eq!(public.advert_interval_cs, 200);
        assert_eq!(public.auth, Auth::simple_password("secret12"));
    }

    #[test]
    fn rfc9568_checksum_and_garp_refresh() {
        let cluster = edited(&[
            (
                "garp = { count = 5, spacing_ms = 0, repeat_after_s = 5, refresh_s = 0 }\n",
                "garp = { count = 3, spacing_ms = 20, repeat_after_s = 0, refresh_s = 30 }\n",
            ),
            ("checksum = \"pseudo-header\"\n", "checksum = \"rfc9568\"\n"),
        ]);
        let view = cluster.node_view(Some("lb1")).unwrap();
        let t = translate(&view, &no_link_local).unwrap();
        let plan = t.instance("public").unwrap();
        assert_eq!(plan.checksum, ChecksumForm::MessageOnly);
        assert_eq!(plan.garp_refresh, Some(Duration::from_secs(30)));
        let public = t.groups[0].instance_config("public").unwrap();
        assert_eq!(public.gratuitous.count, 3);
        assert_eq!(public.gratuitous.spacing, Duration::from_millis(20));
        assert_eq!(public.gratuitous.repeat_after, None);
    }
}
