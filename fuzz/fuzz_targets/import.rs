//! A keepalived.conf or an ALOHA configuration as an operator brings it (or a cut
//! copy): no input may panic the importers (the first byte picks the format).
//! Includes resolve against a directory that does not exist, so they fail cleanly.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if pick & 1 == 0 {
        import::Format::Keepalived
    } else {
        import::Format::Aloha
    };
    let path = PathBuf::from("/nonexistent-lbsuite-fuzz/input.conf");
    let _ = import::import_texts(
        format,
        &[(path, text.to_string())],
        &import::Options::default(),
    );
});
