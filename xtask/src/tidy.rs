//! `cargo xtask tidy`: the project's rules that tools check: module docs, no should_panic tests, no
//! non-test source file over [`MAX_LINES`] lines, no HTML built from strings ([`crate::tidy_html`]),
//! calls only one place may make, and the dependency edges ARCHITECTURE.md forbids.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::root;

/// The most lines a non-test source file may have: past this a file holds more than one concern, and a
/// reader can no longer see what it is for. Test files (see [`is_test_file`]) are exempt.
const MAX_LINES: usize = 600;

/// Source files the size limit applies to, by extension (data, prose and lock files are not code).
const SIZED_EXTENSIONS: &[&str] = &["rs", "js", "css", "html", "sh"];

/// Calls that only one place may make, so that a guarantee cannot be bypassed by a second caller:
/// (the call, the files that may contain it). The needles are split with `concat!` so this file does not
/// match itself.
const RESTRICTED_CALLS: &[(&str, &[&str])] = &[
    // An `Authenticated` (on which every `Authorized` rests) is made only from a user record read for
    // a checked credential.
    (
        concat!("Authenticated::", "new("),
        &[
            "gateway/state/src/authenticated.rs",
            "gateway/core/src/policy.rs",
        ],
    ),
    // Every portal route is in `ROUTES`, so the authorization matrix and the Origin layer see it.
    (concat!(".rou", "te("), &["gateway/portal/src/routes.rs"]),
    // The Origin check is the router's layer; no handler makes (or forgets) it on its own.
    (
        concat!("same_", "origin("),
        &["gateway/portal/src/origin.rs", "gateway/portal/src/auth.rs"],
    ),
];

/// Dependency rules: (package, crates it must never depend on, directly or not).
const FORBIDDEN_EDGES: &[(&str, &[&str])] = &[
    // The programs' browser sign-in is std only: the blocking reviewer and the async CLI share it.
    (
        "sallyport-loopback",
        &["tokio", "mio", "sallyport-core", "hyper"],
    ),
    // xtask links the demo's crate: it stays small to build.
    (
        "sallyport-demo",
        &[
            "tokio",
            "mio",
            "sallyport-core",
            "sallyport-gateway",
            "tempfile",
        ],
    ),
    (
        "sallyport-core",
        &[
            "tokio",
            "rusqlite",
            "russh",
            "axum",
            "hyper",
            "mio",
            "sallyport-recordings",
            "sallyport-state",
            // The image encoders live with their only user, the RDP crate.
            "png",
            "jpeg-encoder",
        ],
    ),
    (
        "sallyport-recordings",
        &[
            "tokio",
            "mio",
            "sallyport-core",
            "sallyport-state",
            "sallyport-relay",
        ],
    ),
    (
        "sallyport-review",
        &[
            "tokio",
            "sallyport-core",
            "sallyport-state",
            "sallyport-relay",
            "sallyport-ssh",
            "sallyport-portal",
            "sallyport-gateway",
        ],
    ),
    (
        "sallyport-desktop-replay",
        &[
            "tokio",
            "mio",
            "sallyport-core",
            "sallyport-state",
            "sallyport-relay",
            "sallyport-rdp",
        ],
    ),
    (
        "sallyport-state",
        &["tokio", "mio", "sallyport-relay", "sallyport-recordings"],
    ),
    (
        "sallyport-relay",
        &[
            "sallyport-ssh",
            "sallyport-rdp",
            "sallyport-portal",
            "sallyport-quic",
            "russh",
            "axum",
            "quinn",
            "ironrdp-session",
        ],
    ),
    (
        "sallyport-ssh",
        &[
            "sallyport-portal",
            "sallyport-rdp",
            "sallyport-quic",
            "axum",
            "quinn",
        ],
    ),
    (
        "sallyport-rdp",
        &[
            "sallyport-portal",
            "sallyport-ssh",
            "sallyport-quic",
            "axum",
            "russh",
            "quinn",
        ],
    ),
    (
        "sallyport-portal",
        &[
            "sallyport-ssh",
            "sallyport-rdp",
            "sallyport-quic",
            "russh",
            "ironrdp-session",
            "quinn",
        ],
    ),
    (
        "sallyport-quic",
        &[
            "sallyport-portal",
            "sallyport-ssh",
            "sallyport-rdp",
            "russh",
            "ironrdp-session",
            "axum",
            "hyper",
        ],
    ),
    (
        "sallyport-transfer",
        &["tokio", "mio", "russh", "sallyport-relay", "sallyport-ssh"],
    ),
    (
        "sallyport-image",
        &[
            "tokio",
            "mio",
            "sallyport-core",
            "sallyport-state",
            "sallyport-relay",
            "sallyport-ssh",
            "sallyport-rdp",
            "sallyport-portal",
            "sallyport-quic",
            "sallyport-gateway",
            "sallyport-tls-pin",
        ],
    ),
    (
        "sallyport-tls-pin",
        &[
            "tokio",
            "sallyport-core",
            "sallyport-state",
            "sallyport-relay",
            "sallyport-recordings",
        ],
    ),
    (
        "sallyport",
        &[
            "sallyport-state",
            "sallyport-relay",
            "sallyport-recordings",
            "sallyport-rdp",
            "rusqlite",
            "axum",
        ],
    ),
];

/// Runs every check and reports all failures at once.
pub fn run() -> anyhow::Result<()> {
    let mut problems = Vec::new();
    check_sources(&root(), &mut problems)?;
    for (package, forbidden) in FORBIDDEN_EDGES {
        let output = Command::new(crate::cargo().get_program())
            .args([
                "tree",
                "--quiet",
                "-p",
                package,
                "-e",
                "normal,build",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .current_dir(root())
            .output()
            .with_context(|| format!("cargo tree -p {package}"))?;
        if !output.status.success() {
            bail!(
                "cargo tree -p {package} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if forbidden.contains(&name) {
                problems.push(format!(
                    "{package} must not depend on {name} (see ARCHITECTURE.md, invariants)"
                ));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: tidy: ok");
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    bail!(
        "tidy found {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    )
}

fn check_sources(dir: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | "node_modules" | ".git" | ".demo") {
                check_sources(&path, problems)?;
            }
            continue;
        }
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !SIZED_EXTENSIONS.contains(&extension) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let shown = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let lines = text.lines().count();
        if lines > MAX_LINES && !is_test_file(Path::new(&shown)) {
            problems.push(format!(
                "{shown}: {lines} lines, over the limit of {MAX_LINES} for a non-test file; split it by concern"
            ));
        }
        if extension != "rs" {
            continue;
        }
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!(
                "{shown}: the file must start with a `//!` comment saying what it is for"
            ));
        }
        for (call, allowed) in RESTRICTED_CALLS {
            if text.contains(call)
                && !allowed.contains(&shown.as_str())
                && !is_test_file(Path::new(&shown))
            {
                problems.push(format!(
                    "{shown}: `{call}` may appear only in {}",
                    allowed.join(", ")
                ));
            }
        }
        if !is_test_file(Path::new(&shown)) {
            for (line, builder) in crate::tidy_html::html_builders(&text) {
                problems.push(format!(
                    "{shown}:{line}: `{builder}` builds HTML from strings; draw it with a maud template (gateway/portal/src/html), which escapes every value"
                ));
            }
        }
        if text.contains(concat!("#[should", "_panic")) {
            problems.push(format!("{shown}: a should_panic test hides which panic happened; assert on a Result instead"));
        }
    }
    Ok(())
}

/// Whether a file (a path relative to the root) is test code: anything under a `tests` or `benches`
/// folder (integration tests, the e2e harness, the fuzz targets), or a module named `tests.rs` or
/// `*_tests.rs` (a crate's unit tests moved beside the code they test).
fn is_test_file(relative: &Path) -> bool {
    let in_test_folder = relative
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .any(|c| matches!(c.as_os_str().to_str(), Some("tests" | "benches")));
    let stem = relative.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    in_test_folder || stem == "tests" || stem.ends_with("_tests")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_files_are_told_from_code() {
        for test in [
            "tests/e2e/src/hostile.rs",
            "recordings/tests/ledger.rs",
            "tui/src/tests.rs",
            "gateway/ssh/src/hostile_tests.rs",
            "tests/fuzz/fuzz_targets/ledger.rs",
        ] {
            assert!(is_test_file(Path::new(test)), "{test} is test code");
        }
        for code in [
            "gateway/portal/src/admin.rs",
            "gateway/portal/web/src/desktop.js",
            "tui/src/testsuite.rs",
            "xtask/src/tidy.rs",
        ] {
            assert!(!is_test_file(Path::new(code)), "{code} is not test code");
        }
    }

    #[test]
    fn a_source_file_over_the_limit_is_a_problem_unless_it_is_a_test() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let lines = |n: usize| format!("//! A file of {n} lines.\n{}", "fn f() {}\n".repeat(n - 1));
        std::fs::write(dir.path().join("at_limit.rs"), lines(MAX_LINES))?;
        std::fs::write(dir.path().join("page.js"), lines(MAX_LINES + 1))?;
        std::fs::write(dir.path().join("notes.md"), lines(MAX_LINES + 1))?;
        std::fs::create_dir(dir.path().join("tests"))?;
        std::fs::write(dir.path().join("tests/long.rs"), lines(MAX_LINES + 1))?;
        std::fs::write(dir.path().join("long_tests.rs"), lines(MAX_LINES + 1))?;
        std::fs::write(dir.path().join("over.rs"), lines(MAX_LINES + 1))?;
        let mut problems = Vec::new();
        check_sources(dir.path(), &mut problems)?;
        problems.sort();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].contains("over.rs: 601 lines"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains("page.js: 601 lines"),
            "{}",
            problems[1]
        );
        Ok(())
    }
}
