//! A line of the sync stream, as the peer's address can send it to lbd: no input
//! may panic, and whatever decodes encodes back to a line that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = ctsync::decode_line(line) {
        let again = ctsync::encode_line(&event);
        let back = ctsync::decode_line(&again).expect("an encoded record decodes");
        assert_eq!(back.entry, event.entry);
        // What the backup would send to the kernel is built without panicking.
        let _ = event.entry.encode_create();
        let _ = event.entry.encode_update();
    }
});
