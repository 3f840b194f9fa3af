//! Installs the portal's third-party browser code (xterm.js) from the npm registry at build time, from
//! the committed package-lock.json, so the assets can be embedded in the binary and no CDN is ever used.
//! Only what the build embeds is installed (`--omit=dev`): ESLint, the dev dependency, is installed by
//! `cargo xtask ci`'s lint step alone, so a demo or a release build never fetches it.

use std::path::Path;
use std::process::Command;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo::rerun-if-changed=web/package.json");
    println!("cargo::rerun-if-changed=web/package-lock.json");
    println!("cargo::rerun-if-changed=web/node_modules/.package-lock.json");
    let marker = web.join("node_modules/@xterm/xterm/lib/xterm.js");
    if marker.exists() {
        return;
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--omit=dev",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
        ])
        .current_dir(&web)
        .status();
    match status {
        Ok(status) if status.success() && marker.exists() => {}
        Ok(status) => fail(&format!(
            "`npm ci` in {} exited with {status}",
            web.display()
        )),
        Err(error) => fail(&format!(
            "could not run npm ({error}); `cargo xtask setup` installs Node.js and npm"
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: the portal's web assets are missing: {message}");
    std::process::exit(1);
}
