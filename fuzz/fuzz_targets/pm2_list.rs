//! `pm2 jlist` output → `parse_jlist`: the instances, or a one-line error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // relman decodes PM2's stdout lossily too (`String::from_utf8_lossy`).
    let text = String::from_utf8_lossy(data);
    if let Err(err) = relman_activate::pm2::parse_jlist(&text) {
        // The error quotes what PM2 printed; it must still be one line (SPEC: invariant 6).
        let message = err.to_string();
        assert!(
            !message.contains('\n'),
            "multi-line jlist error: {message:?}"
        );
    }
});
