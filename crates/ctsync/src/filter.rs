//! Which connections belong to the suite.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::entry::Entry;

/// Selects the flows to sync. An entry matches when ANY given criterion matches;
/// a filter with no criterion matches every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    /// `(value, mask)`: `ct mark & mask == value` (a mark set by the suite's rules).
    pub mark: Option<(u32, u32)>,
    /// Original destination is one of these (the VIPs).
    pub orig_dst: Vec<IpAddr>,
    /// Reply destination is one of these (the SNAT addresses: server-side VIP, pools).
    pub reply_dst: Vec<IpAddr>,
}

impl FlowFilter {
    /// A filter that matches every entry.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether `entry` is one of the suite's flows.
    pub fn matches(&self, entry: &Entry) -> bool {
        if self.mark.is_none() && self.orig_dst.is_empty() && self.reply_dst.is_empty() {
            return true;
        }
        let by_mark = self
            .mark
            .is_some_and(|(v, m)| entry.mark.is_some_and(|mark| mark & m == v));
        by_mark
            || self.orig_dst.contains(&entry.orig.dst)
            || self.reply_dst.contains(&entry.reply.dst)
    }
}
