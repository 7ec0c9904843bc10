//! Subnet arithmetic for the addresses the importer has to place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use config::InterfaceAddress;

/// The default prefix when nothing says one: /24 for IPv4, /64 for IPv6.
pub fn default_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        24
    } else {
        64
    }
}

/// The host prefix of the family: /32 or /128.
pub fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The first address of `addr`'s subnet of length `prefix`.
pub fn first(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = mask32(prefix);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = mask128(prefix);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// The last address of `addr`'s subnet of length `prefix`.
pub fn last(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = mask32(prefix);
            IpAddr::V4(Ipv4Addr::from((u32::from(a) & mask) | !mask))
        }
        IpAddr::V6(a) => {
            let mask = mask128(prefix);
            IpAddr::V6(Ipv6Addr::from((u128::from(a) & mask) | !mask))
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    match u32::from(prefix.min(32)) {
        0 => 0,
        n => u32::MAX << (32 - n),
    }
}

fn mask128(prefix: u8) -> u128 {
    match u32::from(prefix.min(128)) {
        0 => 0,
        n => u128::MAX << (128 - n),
    }
}

/// `address/prefix`.
pub fn with_prefix(address: IpAddr, prefix_len: u8) -> InterfaceAddress {
    InterfaceAddress {
        address,
        prefix_len,
    }
}

/// The prefix length a dotted netmask such as 255.255.255.0 stands for, if it is one.
pub fn netmask_len(mask: &str) -> Option<u8> {
    let m: Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_ends() {
        let a: IpAddr = "198.18.0.77".parse().unwrap();
        assert_eq!(first(a, 24).to_string(), "198.18.0.0");
        assert_eq!(last(a, 24).to_string(), "198.18.0.255");
        assert_eq!(last(a, 0).to_string(), "255.255.255.255");
        let b: IpAddr = "2001:db8:0:a::77".parse().unwrap();
        assert_eq!(first(b, 64).to_string(), "2001:db8:0:a::");
        assert_eq!(last(b, 64).to_string(), "2001:db8:0:a:ffff:ffff:ffff:ffff");
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_len("255.255.255.0"), Some(24));
        assert_eq!(netmask_len("255.255.255.255"), Some(32));
        assert_eq!(netmask_len("0.0.0.0"), Some(0));
        assert_eq!(netmask_len("255.0.255.0"), None);
        assert_eq!(netmask_len("x"), None);
    }
}
