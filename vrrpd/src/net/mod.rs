//! Packet I/O on the links: raw VRRP sockets, and the gratuitous ARP /
//! unsolicited NA that tell the segment where a VIP now lives.

pub mod announce;
pub mod link;
pub mod vrrp_socket;

pub use announce::{AnnounceError, Announcer};
pub use link::{interface_index, interface_mac, LinkError};
pub use vrrp_socket::{Received, SocketError, VrrpSocket};
