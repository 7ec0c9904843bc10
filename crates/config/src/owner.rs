//! Priority 255 means "owns the VIPs" (RFC 5798 §5.2.4): the one rule that ties
//! a node's priority for a group to its addresses. check-config applies it to the
//! file, vrrpd to `priority.set`, with the same words.

use std::net::IpAddr;

use crate::model::Node;
use crate::node_view::NodeView;

/// Why `priority` does not fit node `node` in a group with these VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerPriorityProblem {
    /// 255 on a node that owns none of the group's VIPs.
    NotOwner {
        /// The node.
        node: String,
        /// The group.
        group: String,
    },
    /// Another priority on a node one of whose addresses is a VIP of the group.
    OwnAddress {
        /// The node.
        node: String,
        /// The VIP that is the node's own address.
        vip: IpAddr,
    },
}

impl OwnerPriorityProblem {
    /// What is wrong, as check-config says it.
    pub fn message(&self) -> String {
        match self {
            Self::NotOwner { node, group } => format!(
                "priority 255 is for the owner of the VIPs, but node `{node}` owns none of group `{group}`'s VIPs"
            ),
            Self::OwnAddress { node, vip } => {
                format!("VIP {vip} is node `{node}`'s own address")
            }
        }
    }

    /// How to fix it, as check-config says it.
    pub fn fix(&self) -> String {
        match self {
            Self::NotOwner { .. } => "use 1..=254".to_owned(),
            Self::OwnAddress { node, .. } => format!(
                "use a free address for the VIP, or give node {node} priority 255 (address owner) for its group"
            ),
        }
    }
}

impl std::fmt::Display for OwnerPriorityProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; fix: {}", self.message(), self.fix())
    }
}

/// The VIP of `vips` that is one of `node`'s addresses, if any.
pub(crate) fn owned_vip(node: &Node, vips: &[IpAddr]) -> Option<IpAddr> {
    vips.iter()
        .copied()
        .find(|v| node.addresses.values().flatten().any(|a| a.address == *v))
}

/// Whether `priority` fits `node` in `group` (whose VIPs are `vips`): 255 exactly
/// when the node owns one of them.
pub fn owner_priority_problem(
    node: &Node,
    group: &str,
    vips: &[IpAddr],
    priority: u8,
) -> Option<OwnerPriorityProblem> {
    match (owned_vip(node, vips), priority) {
        (None, 255) => Some(OwnerPriorityProblem::NotOwner {
            node: node.name.clone(),
            group: group.to_owned(),
        }),
        (Some(vip), p) if p != 255 => Some(OwnerPriorityProblem::OwnAddress {
            node: node.name.clone(),
            vip,
        }),
        _ => None,
    }
}

impl NodeView {
    /// Whether this node may run `group` at `priority` (`None`: no such group,
    /// or it may).
    pub fn priority_problem(&self, group: &str, priority: u8) -> Option<OwnerPriorityProblem> {
        let g = self.group(group)?;
        let vips: Vec<IpAddr> = g
            .instances
            .iter()
            .flat_map(|i| i.config.vips.iter().map(|v| v.address.address))
            .collect();
        owner_priority_problem(&self.node, group, &vips, priority)
    }
}
