//! What a node's view needs of the host it runs on: every interface it names
//! exists in this network namespace. Both daemons and `vrrpctl check-config --node`
//! ask the same question, so one file gets one verdict.

use std::ffi::CString;

use crate::diagnostic::Diagnostic;
use crate::node_view::NodeView;

/// Whether an interface of this name exists in the calling thread's namespace.
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Every interface `view` names (VRRP instances, the sync link, NAT rules) that
/// does not exist here, as diagnostics naming what uses it. Tracked interfaces may
/// be absent (they count as down).
pub fn missing_interfaces(view: &NodeView, file: &str) -> Vec<Diagnostic> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for g in &view.groups {
        for i in &g.instances {
            wanted.push((
                i.config.interface.clone(),
                format!("instance `{}`", i.config.name),
            ));
        }
    }
    if view.sync.enabled {
        if let Some(s) = &view.sync.interface {
            wanted.push((s.clone(), "[sync]".to_string()));
        }
    }
    for n in &view.nat {
        for (iface, which) in [(&n.in_interface, "in"), (&n.out_interface, "out")] {
            if let Some(iface) = iface {
                wanted.push((iface.clone(), format!("nat rule `{}` ({which})", n.name)));
            }
        }
    }
    let mut out: Vec<Diagnostic> = Vec::new();
    for (iface, user) in wanted {
        if interface_exists(&iface) {
            continue;
        }
        if let Some(d) = out
            .iter_mut()
            .find(|d| d.key == format!("interface {iface}"))
        {
            d.message.push_str(&format!(", {user}"));
            continue;
        }
        out.push(Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            key: format!("interface {iface}"),
            message: format!(
                "interface {iface} does not exist on this host (node `{}`), used by {user}",
                view.name
            ),
            fix: format!(
                "create {iface} before the daemons start, or correct the interface name in the file"
            ),
        });
    }
    out
}
