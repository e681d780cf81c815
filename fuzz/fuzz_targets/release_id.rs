//! `ReleaseId::parse` accepts exactly the contract's pattern, checked against a regex.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use relman_releases::ReleaseId;

static PATTERN: LazyLock<regex_lite::Regex> =
    LazyLock::new(|| regex_lite::Regex::new("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$").unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match ReleaseId::parse(raw) {
        Ok(id) => {
            assert!(
                PATTERN.is_match(raw),
                "accepted an ID outside the pattern: {raw:?}"
            );
            assert_eq!(id.as_str(), raw);
            // The same rule holds for IDs read from JSON (history, seals).
            let json = serde_json::to_string(&id).unwrap();
            let back: ReleaseId = serde_json::from_str(&json).unwrap();
            assert_eq!(back, id);
        }
        Err(err) => {
            assert!(
                !PATTERN.is_match(raw),
                "refused an ID inside the pattern: {raw:?}"
            );
            assert!(
                err.is_usage(),
                "a bad ID must be a usage error (exit 2): {raw:?}"
            );
        }
    }
});
