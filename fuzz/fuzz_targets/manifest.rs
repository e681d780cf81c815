//! `manifest.sha256` text → `Manifest::parse`; whatever parses renders and parses back to the
//! same entries, and every entry it accepted was a `sha256sum` line (64 hex digits, two spaces).
#![no_main]

use camino::Utf8Path;
use libfuzzer_sys::fuzz_target;
use relman_releases::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Utf8Path::new("manifest.sha256");
    let Ok(manifest) = Manifest::parse(&text, path) else {
        return;
    };
    for line in text.lines() {
        let line = line.strip_prefix('\\').unwrap_or(line);
        let digest = line.split_once("  ").map_or("", |(digest, _)| digest);
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "accepted a line `sha256sum -c` would refuse: {line:?}"
        );
    }
    let rendered = manifest.render();
    let back = Manifest::parse(&rendered, path)
        .unwrap_or_else(|err| panic!("render gave text parse refuses ({err}): {rendered:?}"));
    assert_eq!(back.files, manifest.files, "round trip changed the entries");
    assert_eq!(back.render(), rendered, "render is not stable");
});
