//! What the packet I/O needs to know about an interface: its index and MAC,
//! asked of the kernel in the calling thread's network namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

/// A failed interface query.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The name cannot be an interface name (empty, too long or with a NUL byte).
    #[error("{iface:?}: not a valid interface name")]
    InvalidName {
        /// The name asked for.
        iface: String,
    },
    /// No interface has that name in this network namespace.
    #[error("{iface}: no such interface")]
    NoSuchInterface {
        /// The name asked for.
        iface: String,
    },
    /// The kernel refused the query.
    #[error("{iface}: cannot read the {what}: {error}")]
    Query {
        /// The interface.
        iface: String,
        /// What was asked: "index" or "hardware address".
        what: &'static str,
        /// The kernel's error.
        error: io::Error,
    },
    /// The interface has no Ethernet address (a tunnel, loopback, ...).
    #[error("{iface}: not an Ethernet interface (hardware type {hw_type})")]
    NotEthernet {
        /// The interface.
        iface: String,
        /// Its ARPHRD_* hardware type.
        hw_type: u16,
    },
}

fn c_name(iface: &str) -> Result<CString, LinkError> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(LinkError::InvalidName {
            iface: iface.to_owned(),
        });
    }
    CString::new(iface).map_err(|_| LinkError::InvalidName {
        iface: iface.to_owned(),
    })
}

/// The index of interface `iface` (if_nametoindex).
pub fn interface_index(iface: &str) -> Result<u32, LinkError> {
    let name = c_name(iface)?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index != 0 {
        return Ok(index);
    }
    let source = io::Error::last_os_error();
    if source.raw_os_error() == Some(libc::ENODEV) {
        Err(LinkError::NoSuchInterface {
            iface: iface.to_owned(),
        })
    } else {
        Err(LinkError::Query {
            iface: iface.to_owned(),
            what: "index",
            error: source,
        })
    }
}

/// The Ethernet address of interface `iface` (SIOCGIFHWADDR).
pub fn interface_mac(iface: &str) -> Result<[u8; 6], LinkError> {
    let name = c_name(iface)?;
    let query_err = |source| LinkError::Query {
        iface: iface.to_owned(),
        what: "hardware address",
        error: source,
    };
    // Any socket will do for the ioctl; a datagram one needs no privilege.
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).map_err(query_err)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the fd is open and `req` is a valid ifreq the kernel fills in.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        let source = io::Error::last_os_error();
        return Err(if source.raw_os_error() == Some(libc::ENODEV) {
            LinkError::NoSuchInterface {
                iface: iface.to_owned(),
            }
        } else {
            query_err(source)
        });
    }
    // SAFETY: SIOCGIFHWADDR fills the ifru_hwaddr member of the union.
    let hwaddr = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hwaddr.sa_family != libc::ARPHRD_ETHER {
        return Err(LinkError::NotEthernet {
            iface: iface.to_owned(),
            hw_type: hwaddr.sa_family,
        });
    }
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hwaddr.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_but_no_ethernet_address() {
        assert!(interface_index("lo").is_ok_and(|i| i > 0));
        assert!(matches!(
            interface_mac("lo"),
            Err(LinkError::NotEthernet { hw_type, .. }) if hw_type == libc::ARPHRD_LOOPBACK
        ));
    }

    #[test]
    fn unknown_and_invalid_names_are_told_apart() {
        assert!(matches!(
            interface_index("nosuchif0"),
            Err(LinkError::NoSuchInterface { .. })
        ));
        assert!(matches!(
            interface_index("a-name-longer-than-ifnamsiz"),
            Err(LinkError::InvalidName { .. })
        ));
        assert!(matches!(
            interface_mac("nosuchif0"),
            Err(LinkError::NoSuchInterface { .. })
        ));
    }
}
