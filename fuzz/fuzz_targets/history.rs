//! `history.jsonl` text → `parse_history`; whatever parses writes back (one JSON line per
//! entry, as `append` does) and parses to the same entries; a bad line is a one-line error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relman_releases::history::parse_history;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = match parse_history(&text) {
        Ok(entries) => entries,
        Err(err) => {
            let message = err.to_string();
            assert!(
                !message.contains('\n'),
                "multi-line history error: {message:?}"
            );
            return;
        }
    };
    let mut written = String::new();
    for entry in &entries {
        written.push_str(&serde_json::to_string(entry).expect("an entry serialises"));
        written.push('\n');
    }
    let back = parse_history(&written)
        .unwrap_or_else(|err| panic!("written history does not parse ({err}): {written:?}"));
    assert_eq!(back, entries, "round trip changed the entries");
});
