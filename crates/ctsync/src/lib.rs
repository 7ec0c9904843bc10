//! Connection-state sync for the nftables dataplane: read the active node's conntrack
//! entries (dump and events) over ctnetlink, carry them to the backup as JSON lines,
//! keep them there in a [`SyncStore`] and commit them into the backup's kernel at
//! takeover, NAT mappings included, so balanced connections survive a failover.

mod attr;
mod coalesce;
mod entry;
mod filter;
mod netlink;
mod store;
pub mod synthetic;
mod wire;

pub use coalesce::Coalescer;
pub use entry::{
    DecodeError, Entry, Status, TcpFlags, TcpInfo, TcpState, Tuple, L4, OFFLOADED_TIMEOUT,
};
pub use filter::FlowFilter;
pub use netlink::{
    subscribe, BatchReport, Conntrack, Error, Event, EventKind, Events, InsertOutcome,
    ReplaceReport,
};
pub use store::{CommitReport, Journal, SyncStore};
pub use wire::{decode_line, encode_line, WireError, WIRE_VERSION};

#[cfg(test)]
mod tests;
