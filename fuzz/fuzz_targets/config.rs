//! cluster.toml as an operator (or a truncated copy) may leave it: no input may
//! panic the reader, the node views or the diff.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cluster) = config::parse(text, "fuzz.toml") {
        for name in cluster.node_names() {
            let _ = cluster.node_view(Some(name));
        }
        let _ = config::diff(&cluster, &cluster);
    }
});
