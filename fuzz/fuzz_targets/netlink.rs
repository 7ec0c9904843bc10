//! What the kernel answers on netlink, as the parsers see it (ctnetlink entries,
//! IPVS generic netlink datagrams and attributes): no input may panic. The first
//! byte picks the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(e) = ctsync::Entry::decode_attrs(rest) {
                let _ = e.encode_create();
                let _ = ctsync::Entry::decode_attrs(&e.encode_attrs());
            }
        }
        1 => {
            let _ = ipvs::decode_datagram(rest);
        }
        2 => {
            let _ = ipvs::attr::parse_service_attrs(rest);
        }
        3 => {
            let _ = ipvs::attr::parse_dest_attrs(rest);
        }
        _ => {
            let _ = ipvs::attr::parse_daemon_attrs(rest);
        }
    }
});
