//! lbd: the load balancer daemon, a reconcile loop around `crates/dataplane`.
//!
//! - [`desired`]: configuration and health to the dataplane's desired state (pure);
//! - [`backend`]: backend selection and the thread that owns the backend;
//! - [`daemon`]: start-up, the reconcile loop, reload, prepare, status, shutdown;
//! - [`roles`]: following vrrpd's sync-group states;
//! - [`tracking`]: service quorums sent to vrrpd as priority tracks;
//! - [`control`]: the control socket's methods;
//! - [`error`]: what can fail (refused configurations, applies, server commands);
//! - [`servers`]: run-time server overrides (drain, disable, weight) and their
//!   state file, and active/inactive connection counts;
//! - [`forwarding`]: whether the node forwards what the NAT services need;
//! - [`least_conn`]: lc and wlc on the nft backend, fed from conntrack's counts;
//! - [`sync`]: connection-state sync with the peer (nft backend);
//! - [`telemetry`], [`conntrack`]: Prometheus metrics and SNAT port usage;
//! - [`status_page`]: the read-only status page on the metrics listener;
//! - [`announce`]: active-active mode, the VIPs announced through FRR or BIRD.

pub mod announce;
pub mod backend;
pub mod cli;
pub mod conntrack;
pub mod control;
pub mod daemon;
pub mod desired;
pub mod error;
pub mod forwarding;
pub mod least_conn;
pub mod roles;
pub mod servers;
pub mod status_page;
pub mod sync;
pub mod telemetry;
pub mod tracking;
