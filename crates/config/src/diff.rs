//! What changed between two configurations, so a reload touches only that.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::*;

/// Added, removed and changed named items of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedChanges {
    /// Names only in the new configuration.
    pub added: Vec<String>,
    /// Names only in the old configuration.
    pub removed: Vec<String>,
    /// Items in both whose settings differ.
    pub changed: Vec<FieldChanges>,
}

impl NamedChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Whether `name` was added, removed or changed.
    pub fn touches(&self, name: &str) -> bool {
        self.added.iter().any(|n| n == name)
            || self.removed.iter().any(|n| n == name)
            || self.changed.iter().any(|c| c.name == name)
    }
}

/// The keys that differ in one named item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChanges {
    /// Item name.
    pub name: String,
    /// Names of the top-level keys that differ (such as `weight`, `vips`).
    pub fields: Vec<String>,
}

/// A service present in both configurations that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    /// Service name.
    pub name: String,
    /// Service-level keys that differ (servers excluded).
    pub fields: Vec<String>,
    /// Per-server changes.
    pub servers: NamedChanges,
}

/// Changes to services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChanges {
    /// Services only in the new configuration.
    pub added: Vec<String>,
    /// Services only in the old configuration.
    pub removed: Vec<String>,
    /// Services in both that differ.
    pub changed: Vec<ServiceChange>,
}

impl ServiceChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything that differs between two configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// `[[node]]` changes (priorities, addresses, peers).
    pub nodes: NamedChanges,
    /// `[[sync_group]]` changes (membership).
    pub sync_groups: NamedChanges,
    /// `[[instance]]` changes.
    pub instances: NamedChanges,
    /// `[[service]]` changes, down to servers.
    pub services: ServiceChanges,
    /// `[[nat]]` changes.
    pub nat: NamedChanges,
    /// `[[check]]` changes.
    pub checks: NamedChanges,
    /// Whether `[cluster]` changed.
    pub cluster_changed: bool,
    /// Whether `[sync]` changed.
    pub sync_changed: bool,
    /// Whether `[control]` changed (needs a restart to take effect).
    pub control_changed: bool,
    /// Whether `[metrics]` changed.
    pub metrics_changed: bool,
    /// Whether `[dataplane]` changed.
    pub dataplane_changed: bool,
    /// Whether `[vrrpd]` changed (takes effect at vrrpd's next start).
    pub vrrpd_changed: bool,
}

impl ConfigDiff {
    /// Whether the configurations are equivalent.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.sync_groups.is_empty()
            && self.instances.is_empty()
            && self.services.is_empty()
            && self.nat.is_empty()
            && self.checks.is_empty()
            && !self.global_changed()
    }

    /// Whether any single section (`[cluster]`, `[sync]`, `[control]`, `[metrics]`,
    /// `[dataplane]`, `[vrrpd]`) changed.
    pub fn global_changed(&self) -> bool {
        self.cluster_changed
            || self.sync_changed
            || self.control_changed
            || self.metrics_changed
            || self.dataplane_changed
            || self.vrrpd_changed
    }
}

/// Compares two configurations item by item, matching items by name.
pub fn diff(old: &ClusterConfig, new: &ClusterConfig) -> ConfigDiff {
    ConfigDiff {
        nodes: named(&old.nodes, &new.nodes, |n| &n.name, &[]),
        sync_groups: named(&old.sync_groups, &new.sync_groups, |g| &g.name, &[]),
        instances: named(&old.instances, &new.instances, |i| &i.name, &[]),
        services: services(&old.services, &new.services),
        nat: named(&old.nat, &new.nat, |n| &n.name, &[]),
        checks: named(&old.checks, &new.checks, |c| &c.name, &[]),
        cluster_changed: old.cluster != new.cluster,
        sync_changed: old.sync != new.sync,
        control_changed: old.control != new.control,
        metrics_changed: old.metrics != new.metrics,
        dataplane_changed: old.dataplane != new.dataplane,
        vrrpd_changed: old.vrrpd != new.vrrpd,
    }
}

/// Top-level keys whose serialized values differ, ignoring `skip`.
fn changed_fields<T: Serialize>(a: &T, b: &T, skip: &[&str]) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn named<T: Serialize>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
    skip: &[&str],
) -> NamedChanges {
    let mut out = NamedChanges::default();
    for o in old {
        match new.iter().find(|n| name(n) == name(o)) {
            None => out.removed.push(name(o).clone()),
            Some(n) => {
                let fields = changed_fields(o, n, skip);
                if !fields.is_empty() {
                    out.changed.push(FieldChanges {
                        name: name(o).clone(),
                        fields,
                    });
                }
            }
        }
    }
    for n in new {
        if !old.iter().any(|o| name(o) == name(n)) {
            out.added.push(name(n).clone());
        }
    }
    out
}

fn services(old: &[Service], new: &[Service]) -> ServiceChanges {
    let mut out = ServiceChanges::default();
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => out.removed.push(o.name.clone()),
            Some(n) => {
                let fields = changed_fields(o, n, &["server"]);
                let servers = named(&o.servers, &n.servers, |s| &s.name, &[]);
                if !fields.is_empty() || !servers.is_empty() {
                    out.changed.push(ServiceChange {
                        name: o.name.clone(),
                        fields,
                        servers,
                    });
                }
            }
        }
    }
    for n in new {
        if !old.iter().any(|o| o.name == n.name) {
            out.added.push(n.name.clone());
        }
    }
    out
}

fn write_named(f: &mut fmt::Formatter<'_>, what: &str, c: &NamedChanges) -> fmt::Result {
    for a in &c.added {
        writeln!(f, "+ {what} {a}")?;
    }
    for r in &c.removed {
        writeln!(f, "- {what} {r}")?;
    }
    for ch in &c.changed {
        writeln!(f, "~ {what} {} ({})", ch.name, ch.fields.join(", "))?;
    }
    Ok(())
}

impl fmt::Display for ConfigDiff {
    /// One line per change: `+ service web`, `~ server web/srv1 (weight)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        write_named(f, "node", &self.nodes)?;
        write_named(f, "sync_group", &self.sync_groups)?;
        write_named(f, "instance", &self.instances)?;
        for a in &self.services.added {
            writeln!(f, "+ service {a}")?;
        }
        for r in &self.services.removed {
            writeln!(f, "- service {r}")?;
        }
        for s in &self.services.changed {
            if !s.fields.is_empty() {
                writeln!(f, "~ service {} ({})", s.name, s.fields.join(", "))?;
            }
            for a in &s.servers.added {
                writeln!(f, "+ server {}/{a}", s.name)?;
            }
            for r in &s.servers.removed {
                writeln!(f, "- server {}/{r}", s.name)?;
            }
            for ch in &s.servers.changed {
                writeln!(
                    f,
                    "~ server {}/{} ({})",
                    s.name,
                    ch.name,
                    ch.fields.join(", ")
                )?;
            }
        }
        write_named(f, "nat", &self.nat)?;
        write_named(f, "check", &self.checks)?;
        for (changed, what) in [
            (self.cluster_changed, "[cluster]"),
            (self.sync_changed, "[sync]"),
            (self.control_changed, "[control]"),
            (self.metrics_changed, "[metrics]"),
            (self.dataplane_changed, "[dataplane]"),
            (self.vrrpd_changed, "[vrrpd]"),
        ] {
            if changed {
                writeln!(f, "~ {what}")?;
            }
        }
        Ok(())
    }
}
