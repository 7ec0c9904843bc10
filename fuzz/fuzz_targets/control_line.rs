//! A control-socket line, as a local user can send it to either daemon (and as a
//! daemon's reply reaches vrrpctl): no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ctl::parse_request(data);
    let _ = ctl::wire::ServerLine::parse(data);
});
