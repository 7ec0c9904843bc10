//! Topology harness: declare hosts, links and bridges as data ([`Topology`]) and bring
//! them up for real in network namespaces ([`Lab`]), with iproute2.
//!
//! Each host is a namespace `lbt-<pid>-<n>-<host>`; each interface is a veth whose
//! other end is a port of a Linux bridge in the lab's own switch namespace
//! `lbt-<pid>-<n>-switch`. Nothing is created in the root namespace. A lab is torn
//! down on drop, including while a failing test unwinds; [`sweep`] removes what runs
//! that were killed outright left behind.

mod cluster_lab;
pub mod cluster_run;
mod command;
pub mod dashboard;
mod error;
pub mod exposition;
mod host;
mod lab;
mod logs;
mod netns;
mod process;
pub mod skewed_load;
mod systemd;
mod topology;
mod traffic;

pub use cluster_lab::topology_from_cluster;
pub use error::LabError;
pub use host::{Host, LinkState, NetnsThread, EXEC_TIMEOUT};
pub use lab::Lab;
pub use logs::{LogDir, KEEP_LOGS_ENV};
pub use netns::{list_namespaces, namespace_exists, owner_pid, sweep, NETNS_DIR, PREFIX};
pub use process::{Process, STOP_GRACE};
pub use systemd::{reload_as_the_unit, Notification, NotifySocket};
pub use topology::{
    HostSpec, InterfaceSpec, Prefix, Role, Route, Topology, MAX_HOSTNAME, MAX_IFNAME,
};
pub use traffic::{ReplyServer, PEER_PLACEHOLDER};

/// Env switch making root-only tests fail instead of skipping when not root.
pub const REQUIRE_ROOT_ENV: &str = "LBSUITE_REQUIRE_ROOT";

/// Whether this process runs as root; if not, prints "SKIP (needs root)" and returns
/// false, or panics when [`REQUIRE_ROOT_ENV`] is 1. Call first in root-only tests.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: needs root and {REQUIRE_ROOT_ENV}=1");
    }
    println!("SKIP (needs root): {test}");
    false
}
