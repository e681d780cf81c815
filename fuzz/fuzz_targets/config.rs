//! `relman.toml` text → `Config::parse`: any text gets `Ok` or a one-line `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file as UTF-8 first; lossy decoding lets every input reach the
    // parser instead of stopping most mutations at the decoder.
    let text = String::from_utf8_lossy(data);
    if let Err(err) = relman_releases::Config::parse(&text, camino::Utf8Path::new("relman.toml")) {
        // The contract's error is one line (SPEC: invariant 6).
        let message = err.to_string();
        assert!(
            !message.contains('\n'),
            "multi-line config error: {message:?}"
        );
    }
});
