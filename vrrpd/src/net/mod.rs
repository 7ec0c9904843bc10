//! Packet I/O on the links: raw VRRP sockets, and the gratuitous ARP /
//! unsolicited NA that tell the segment where a VIP now lives.
//!
//! Its errors name the interface and say the kernel's error themselves; they do not
//! return it as `source()` as well, so an `anyhow` chain (`{:#}`) prints it once.

pub mod announce;
pub mod link;
pub mod vrrp_socket;

pub use announce::{AnnounceError, Announcer};
pub use link::{interface_index, interface_mac, LinkError};
pub use vrrp_socket::{Received, SocketError, VrrpSocket};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_kernel_error_once() {
        let kernel = || std::io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            SocketError::Send {
                iface: "eth0".into(),
                dst: "224.0.0.18".parse().unwrap(),
                error: kernel(),
            }
            .into(),
            AnnounceError::Send {
                iface: "eth0".into(),
                vip: "198.18.0.100".parse().unwrap(),
                sent: 0,
                error: kernel(),
            }
            .into(),
            LinkError::Query {
                iface: "eth0".into(),
                what: "index",
                error: kernel(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
            assert!(chain.starts_with("eth0: "), "{chain}");
        }
    }
}
