//! The command-line modes for scripts: verify a database (against kept checkpoints too) or an evidence file, print
//! the newest checkpoint, export a session, search.
//! Each prints plain lines (recorded text cleaned of control characters) and returns the process's exit code.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use sallyport_recordings::{Checkpoint, ProofCheck, Verification, check_evidence};

use crate::format;
use crate::loader::Source;
use crate::model::Integrity;
use crate::screen_view::clean;

/// Verifies a database: the ledger (chain, checkpoints, and every session and chunk against it), each session's own
/// chain and seal, and each checkpoint kept elsewhere (`--checkpoint`). One line per session, one per finding, then
/// what was checked; exit 1 on any finding or broken session, 2 without a key.
pub fn verify_db(
    db: &Path,
    key: Option<VerifyingKey>,
    session: Option<&str>,
    kept: &[Checkpoint],
) -> anyhow::Result<ExitCode> {
    let Some(key) = key else {
        eprintln!(
            "no public key to check seals against: pass --key (the gateway writes recording-signing.pub beside \
             the database)"
        );
        return Ok(ExitCode::from(2));
    };
    let source = Source::open(db, None, Some(key))?;
    let verification = source.store().verify_database(&key, kept)?;
    let report = &verification.ledger;
    if let Some(id) = session
        && !verification.sessions.iter().any(|(row, _)| row.id == id)
    {
        anyhow::bail!("no session {id}");
    }
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (row, v) in &verification.sessions {
        if session.is_some_and(|id| id != row.id) {
            continue;
        }
        let findings: Vec<_> = report.findings_for(&row.id).collect();
        let integrity = Integrity::judge(v, report.state(&row.id), &findings);
        let verdict = match &integrity {
            Integrity::Intact => "intact".to_owned(),
            Integrity::BeforeLedger => "intact (recorded before the ledger)".to_owned(),
            Integrity::Recovered { detail } => format!("intact, {detail}"),
            Integrity::Unsealed => "unsealed (live)".to_owned(),
            Integrity::Failed { detail, .. } => format!("FAILED: {detail}"),
            Integrity::Error(e) => format!("FAILED: {e}"),
            Integrity::NoKey | Integrity::Pending => "not checked".to_owned(),
        };
        if integrity.failed() {
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
    // Findings about sessions the database no longer holds, and about the ledger itself.
    let listed = |id: &str| verification.sessions.iter().any(|(row, _)| row.id == id);
    let mut other = 0;
    for finding in &report.findings {
        let unlisted = finding.session.as_deref().is_none_or(|id| !listed(id));
        if unlisted && session.is_none_or(|id| finding.session.as_deref() == Some(id)) {
            writeln!(out, "FINDING: {}", clean(&finding.to_string()))?;
            other += 1;
        }
    }
    let last = match &report.last_checkpoint {
        Some(c) => format!("the last valid one at {} UTC", format::datetime(c.at_ms)),
        None => "none valid".to_owned(),
    };
    writeln!(
        out,
        "ledger: {} entries, {} checkpoints ({last}), {} written since; {} kept checkpoints checked",
        report.entries,
        report.checkpoints,
        report.entries.saturating_sub(report.vouched),
        report.kept_checked
    )?;
    let shown = if session.is_some() {
        1
    } else {
        verification.sessions.len()
    };
    writeln!(
        out,
        "{shown} sessions and {} checkpoints checked: {failed} sessions failed, {other} other findings",
        report.checkpoints
    )?;
    Ok(if failed > 0 || other > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the newest checkpoint of a database as a line to keep elsewhere (`verify --checkpoint FILE DB` later).
pub fn print_checkpoint(db: &Path) -> anyhow::Result<ExitCode> {
    let store = sallyport_recordings::Store::open_read_only(db)
        .with_context(|| format!("opening {}", db.display()))?;
    match store.latest_checkpoint()? {
        Some(checkpoint) => {
            println!("{}", checkpoint.to_file());
            eprintln!(
                "checkpoint of {} entries, {} UTC: keep this line somewhere the appliance cannot write",
                checkpoint.size,
                format::datetime(checkpoint.at_ms)
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("the database has no checkpoint yet");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Reads kept checkpoint files (one checkpoint per non-empty line; the journal's `checkpoint=` field works too).
pub fn read_checkpoints(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Checkpoint>> {
    let mut kept = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let json = line.find('{').map_or(line, |at| &line[at..]);
            let checkpoint = Checkpoint::from_file(json)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            kept.push(checkpoint);
        }
    }
    Ok(kept)
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
    let ledger = match &check.ledger {
        ProofCheck::Covered {
            checkpoint_at_ms,
            state,
        } => Ok(format!(
            "the ledger's checkpoint of {} UTC covers it as exported ({state})",
            format::datetime(*checkpoint_at_ms)
        )),
        ProofCheck::NotCovered => Ok("no checkpoint covered its last part yet when it was exported".to_owned()),
        ProofCheck::Absent => Ok(
            "no ledger proof (an evidence file from before the ledger): nothing shows it was not cut short".to_owned(),
        ),
        ProofCheck::Failed(why) => Err(why.clone()),
    };
    match (&check.verification, ledger) {
        (Verification::Intact { chunks }, Ok(ledger)) => {
            println!(
                "intact: {chunks} chunks, chain whole, seal valid; {}",
                clean(&ledger)
            );
            Ok(ExitCode::SUCCESS)
        }
        (Verification::Intact { .. }, Err(why)) => {
            println!("FAILED: the ledger proof does not hold: {}", clean(&why));
            Ok(ExitCode::FAILURE)
        }
        (other, _) => {
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
