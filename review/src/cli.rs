//! The command-line modes for scripts: verify a database or an evidence file, export a session, search.
//! Each prints plain lines (recorded text cleaned of control characters) and returns the process's exit code.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use sallyport_recordings::{Verification, check_evidence};

use crate::format;
use crate::loader::Source;
use crate::model::Integrity;
use crate::screen_view::clean;

/// Verifies every session (or one) of a database: one line each; exit 1 when any chain or seal is broken,
/// 2 without a key. Unsealed (live) sessions are reported but do not fail.
pub fn verify_db(
    db: &Path,
    key: Option<VerifyingKey>,
    session: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if key.is_none() {
        eprintln!(
            "no public key to check seals against: pass --key (the gateway writes recording-signing.pub beside \
             the database)"
        );
        return Ok(ExitCode::from(2));
    }
    let source = Source::open(db, None, key)?;
    let rows = source.sessions()?;
    let rows: Vec<_> = match session {
        Some(id) => {
            let found: Vec<_> = rows.into_iter().filter(|r| r.id == id).collect();
            if found.is_empty() {
                anyhow::bail!("no session {id}");
            }
            found
        }
        None => rows,
    };
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let integrity = source.integrity(&row.id);
        let verdict = match &integrity {
            Integrity::Intact => "intact".to_owned(),
            Integrity::Unsealed => "unsealed (live or not recovered)".to_owned(),
            Integrity::Failed { detail, .. } => format!("FAILED: {detail}"),
            Integrity::Error(e) => format!("FAILED: {e}"),
            Integrity::NoKey | Integrity::Pending => "not checked".to_owned(),
        };
        if matches!(integrity, Integrity::Failed { .. } | Integrity::Error(_)) {
            failed += 1;
        }
        writeln!(
            out,
            "{} {} {}@{} {}",
            row.id,
            format::datetime(row.started_at_ms),
            clean(&row.user),
            clean(&row.target),
            clean(&verdict)
        )?;
    }
    writeln!(out, "{} sessions checked, {failed} failed", rows.len())?;
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Verifies an evidence file offline; exit 1 when it does not verify.
pub fn verify_file(path: &Path, key: Option<VerifyingKey>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let check = match check_evidence(&bytes, key.as_ref()) {
        Ok(check) => check,
        Err(e) => {
            println!("FAILED: {}", clean(&e.to_string()));
            return Ok(ExitCode::FAILURE);
        }
    };
    let s = &check.session;
    println!(
        "session {} {}@{} started {} UTC",
        s.id,
        clean(&s.user),
        clean(&s.target),
        format::datetime(s.started_at_ms)
    );
    let whose = if key.is_some() {
        "the given key"
    } else {
        "the key in the file (compare it with the appliance's)"
    };
    println!("key {} ({whose})", hex::encode(check.key));
    match &check.verification {
        Verification::Intact { chunks } => {
            println!("intact: {chunks} chunks, chain whole, seal valid");
            Ok(ExitCode::SUCCESS)
        }
        other => {
            let detail = match Integrity::from_verification(other) {
                Integrity::Failed { detail, .. } => detail,
                _ => "the session is not sealed".to_owned(),
            };
            println!("FAILED: {}", clean(&detail));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Searches and prints one line per session.
pub fn search(source: &mut Source, text: &str) -> anyhow::Result<ExitCode> {
    let progress = source.update_index()?;
    if progress.chunks > 0 {
        eprintln!(
            "indexed {} chunks of {} sessions",
            progress.chunks, progress.sessions
        );
    }
    let (hits, elapsed) = source.search(text)?;
    for hit in &hits {
        let excerpt: String = hit.snippet.iter().map(|(t, _)| t.as_str()).collect();
        println!(
            "{} at {} {}: {}",
            hit.session_id,
            format::duration(hit.first_at_ms),
            if hit.input { "input" } else { "output" },
            clean(&excerpt)
        );
    }
    eprintln!(
        "{} sessions in {:.2} ms",
        hits.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(ExitCode::SUCCESS)
}
