//! Runs the browser's desktop codec test (web/test/desktop-protocol.test.js) under Node.js against the
//! golden vectors the gateway's own test reads (gateway/core/tests/golden/desktop.json), so `cargo test`
//! checks that desktop-protocol.js and sallyport-core encode and read the same bytes. Without Node.js
//! the test fails: a skipped check would let the two drift apart unseen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn desktop_protocol_js_matches_the_golden_vectors() {
    let portal = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = portal.join("web/test/desktop-protocol.test.js");
    let golden = portal.join("../core/tests/golden/desktop.json");
    assert!(
        golden.is_file(),
        "golden vectors missing at {}",
        golden.display()
    );
    let output = match Command::new("node").arg(&script).arg(&golden).output() {
        Ok(output) => output,
        Err(error) => panic!(
            "could not run `node` ({error}): Node.js is needed to test the browser's desktop codec \
             against the golden vectors; `cargo xtask setup` installs it"
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "desktop-protocol.test.js failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("golden vectors match"),
        "the JavaScript test said nothing of the vectors:\n{stdout}\n{stderr}"
    );
}
