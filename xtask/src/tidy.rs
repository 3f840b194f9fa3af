//! `cargo xtask tidy`: the project's rules that tools check: module docs, no should_panic tests, and the
//! dependency edges ARCHITECTURE.md forbids.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::root;

/// Dependency rules: (package, crates it must never depend on, directly or not).
const FORBIDDEN_EDGES: &[(&str, &[&str])] = &[
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
            "russh",
            "axum",
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
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let shown = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            problems.push(format!(
                "{shown}: the file must start with a `//!` comment saying what it is for"
            ));
        }
        if text.contains(concat!("#[should", "_panic")) {
            problems.push(format!("{shown}: a should_panic test hides which panic happened; assert on a Result instead"));
        }
    }
    Ok(())
}
