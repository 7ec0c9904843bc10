//! On a kernel without IPVS (the development machines), connecting must fail
//! with the error that makes lbd's `auto` backend pick nftables.

use std::path::Path;

/// The kernel has IPVS loaded or built in (then this test has nothing to check).
fn kernel_has_ipvs() -> bool {
    Path::new("/proc/net/ip_vs").exists() || Path::new("/sys/module/ip_vs").exists()
}

#[test]
fn connect_without_ipvs_says_use_nft() {
    if kernel_has_ipvs() {
        println!("SKIP (this kernel has IPVS; the VM tests cover it)");
        return;
    }
    let err = ipvs::IpvsClient::connect().expect_err("this kernel has no IPVS");
    assert!(matches!(err, ipvs::IpvsError::NotAvailable), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("the kernel has no IPVS"), "{text}");
    assert!(text.contains("use the nft backend"), "{text}");
}
