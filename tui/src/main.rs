//! `sallyport-review`: find, replay, verify and export session recordings, in a terminal UI or from scripts.
//! It reads recordings only through `sallyport-recordings` and never writes to the recordings database.

mod app;
mod asciicast;
#[cfg(feature = "bench")]
mod bench;
mod cli;
mod desktop;
mod format;
mod graphics;
mod help;
mod list;
mod loader;
mod model;
mod player;
mod remote;
mod replay;
mod results;
mod run;
mod screen_view;
mod table;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ed25519_dalek::VerifyingKey;

/// Where the gateway keeps its recordings by default.
const DEFAULT_DB: &str = "/var/lib/sallyport/recordings.db";

#[derive(Parser)]
#[command(
    name = "sallyport-review",
    about = "Review Sallyport session recordings: list, search, replay, verify, export",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    open: OpenArgs,
    /// Verify every session's chain and seal (or only --session) and exit: non-zero when one is broken.
    #[arg(long)]
    verify: bool,
    /// With --verify: only this session.
    #[arg(long, requires = "verify")]
    session: Option<String>,
    /// With --verify: a checkpoint kept elsewhere (a file from `sallyport-review checkpoint`, or journal lines with
    /// `kind=ledger_checkpoint`); the database must hold the history it signed. Repeatable.
    #[arg(long, value_name = "FILE", requires = "verify")]
    checkpoint: Vec<PathBuf>,
    /// How desktop frames are drawn: auto (from the terminal's environment), kitty, sixel, iterm2 or
    /// halfblocks (works everywhere).
    #[arg(long, default_value = "auto", value_parser = graphics_choice)]
    graphics: String,
}

#[derive(clap::Args)]
struct OpenArgs {
    /// The recordings database.
    #[arg(default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Read the recordings of a running gateway (https://host[:port]) with an auditor's or admin's portal
    /// account instead of a database file; they are mirrored into ~/.cache/sallyport-review and verified here.
    #[arg(long, value_name = "URL", conflicts_with = "db")]
    gateway: Option<String>,
    /// With --gateway: the SHA-256 fingerprint of the gateway's TLS certificate, as its console shows it
    /// (otherwise it is shown and pinned on first use after you agree).
    #[arg(long, requires = "gateway")]
    fingerprint: Option<String>,
    /// With --gateway: the portal account (asked when not given; the password is asked, or read from
    /// SALLYPORT_REVIEW_PASSWORD).
    #[arg(long, requires = "gateway")]
    user: Option<String>,
    /// With --gateway: sign in at this identity provider of the gateway instead of a portal password
    /// (in your browser when one can be opened here, otherwise by confirming a code at the provider's
    /// page, in any browser).
    #[arg(long, requires = "gateway", conflicts_with = "user")]
    provider: Option<String>,
    /// With --gateway: sign in in your browser, any way the portal's login page offers (a provider, a
    /// passkey, a password and its second factor).
    #[arg(long, requires = "gateway", conflicts_with = "user")]
    browser: bool,
    /// With --provider: confirm a code at the provider's page instead of opening a browser here.
    #[arg(long, requires = "provider", conflicts_with = "browser")]
    device: bool,
    /// The appliance's public signing key (hex, or a file holding it); default: recording-signing.pub beside the
    /// database.
    #[arg(long)]
    key: Option<String>,
    /// The search index file; default: DB.search beside the database when writable, else in ~/.cache.
    #[arg(long)]
    index: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Check an evidence file offline; or, with --checkpoint, a database against checkpoints kept elsewhere.
    /// Non-zero when it does not verify.
    Verify {
        /// The evidence file (with --checkpoint: the recordings database).
        file: PathBuf,
        /// The appliance's public key (hex or file); without it the file's own key is used and printed (a database
        /// needs it, or recording-signing.pub beside it).
        #[arg(long)]
        key: Option<String>,
        /// Checkpoints kept elsewhere to check the database against (repeatable).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
    },
    /// Print the database's newest checkpoint, to keep where the appliance cannot rewrite it.
    Checkpoint {
        /// The recordings database.
        #[arg(default_value = DEFAULT_DB)]
        db: PathBuf,
    },
    /// Export a session.
    Export {
        /// The session's id.
        #[arg(long)]
        session: String,
        /// Write asciicast v2 here.
        #[arg(long)]
        asciicast: Option<PathBuf>,
        /// Write an evidence file here.
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Write a desktop session's picture at `--at` as PNG here.
        #[arg(long)]
        png: Option<PathBuf>,
        /// The moment for `--png`, in seconds since the session started (default: its end).
        #[arg(long, requires = "png")]
        at: Option<f64>,
        #[command(flatten)]
        open: OpenArgs,
    },
    /// Search the output and input of all sessions.
    Search {
        /// The text.
        text: String,
        #[command(flatten)]
        open: OpenArgs,
    },
}

impl OpenArgs {
    /// With `--gateway`: logs in, fetches the recording key, brings the local mirror up to date and points
    /// `db` at it. The key is pinned like the certificate: a gateway whose recording key changed is refused
    /// unless `--key` says which key to trust.
    fn resolve(&mut self) -> anyhow::Result<Option<Arc<remote::Remote>>> {
        let Some(url) = self.gateway.clone() else {
            return Ok(None);
        };
        let remote = remote::Remote::connect(&remote::Options {
            url,
            fingerprint: self.fingerprint.clone(),
            user: self.user.clone(),
            provider: self.provider.clone(),
            browser: self.browser,
            device: self.device,
        })?;
        let dir = remote::mirror_dir(remote.addr());
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let key = remote.key_hex()?;
        let key_file = dir.join("recording-signing.pub");
        match std::fs::read_to_string(&key_file) {
            Ok(known) if known.trim() != key && self.key.is_none() => anyhow::bail!(
                "the gateway's recording key changed (it was {}, it is now {key}): recordings are not checked \
                 against a key the gateway swapped; pass --key with the appliance's key to go on",
                known.trim()
            ),
            _ => std::fs::write(&key_file, format!("{key}\n"))
                .with_context(|| format!("writing {}", key_file.display()))?,
        }
        let db = dir.join("recordings.db");
        let synced = remote.sync(&db)?;
        eprintln!(
            "{} as {} ({}): {} sessions, {} updated, {} chunks fetched",
            remote.addr().base(),
            remote.who.0,
            remote.who.1,
            synced.sessions,
            synced.updated,
            synced.chunks
        );
        self.db = db;
        Ok(Some(Arc::new(remote)))
    }

    fn key(&self) -> anyhow::Result<Option<VerifyingKey>> {
        match &self.key {
            Some(k) => Ok(Some(loader::read_key(k)?)),
            None => {
                let beside = self
                    .db
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("recording-signing.pub");
                if beside.exists() {
                    Ok(Some(loader::read_key(&beside.to_string_lossy())?))
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn source(&self) -> anyhow::Result<loader::Source> {
        let index = self
            .index
            .clone()
            .unwrap_or_else(|| loader::default_index_path(&self.db));
        if let Some(dir) = index.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        loader::Source::open(&self.db, Some(&index), self.key()?)
    }
}

/// Checks `--graphics` while parsing the command line.
fn graphics_choice(text: &str) -> Result<String, String> {
    graphics::Protocol::parse(text).map(|_| text.to_owned())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

fn main() -> ExitCode {
    #[cfg(feature = "bench")]
    if std::env::args().nth(1).as_deref() == Some("bench") {
        return match bench::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sallyport-review bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sallyport-review: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    let remote = match &mut cli.command {
        Some(Command::Export { open, .. } | Command::Search { open, .. }) => open.resolve()?,
        Some(Command::Verify { .. } | Command::Checkpoint { .. }) => None,
        None => cli.open.resolve()?,
    };
    let result = run_resolved(cli, remote.clone());
    if let Some(remote) = remote {
        remote.logout();
    }
    result
}

fn run_resolved(cli: Cli, remote: Option<Arc<remote::Remote>>) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Verify {
            file,
            key,
            checkpoint,
        }) if !checkpoint.is_empty() => {
            let open = OpenArgs {
                db: file,
                gateway: None,
                fingerprint: None,
                user: None,
                provider: None,
                browser: false,
                device: false,
                key,
                index: None,
            };
            cli::verify_db(
                &open.db,
                open.key()?,
                None,
                &cli::read_checkpoints(&checkpoint)?,
            )
        }
        Some(Command::Verify { file, key, .. }) => {
            let key = key.as_deref().map(loader::read_key).transpose()?;
            cli::verify_file(&file, key)
        }
        Some(Command::Checkpoint { db }) => cli::print_checkpoint(&db),
        Some(Command::Export {
            session,
            asciicast,
            evidence,
            png,
            at,
            open,
        }) => {
            if asciicast.is_none() && evidence.is_none() && png.is_none() {
                anyhow::bail!(
                    "say what to write: --asciicast FILE, --evidence FILE and/or --png FILE"
                );
            }
            let source = loader::Source::open(&open.db, None, None)?;
            if let Some(path) = asciicast {
                let mut file = std::io::BufWriter::new(
                    std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?,
                );
                source.export_asciicast(&session, &mut file)?;
                std::io::Write::flush(&mut file)?;
            }
            if let Some(path) = evidence {
                std::fs::write(&path, source.store().export_evidence(&session)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = png {
                let at_ms = at.map_or(u64::MAX, |s| (s.max(0.0) * 1000.0).round() as u64);
                let bytes = source.desktop_frame(&session, at_ms)?;
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Search { text, open }) => cli::search(&mut open.source()?, &text),
        None if cli.verify => cli::verify_db(
            &cli.open.db,
            cli.open.key()?,
            cli.session.as_deref(),
            &cli::read_checkpoints(&cli.checkpoint)?,
        ),
        None => {
            let mut source = cli.open.source()?;
            let title = match &remote {
                Some(remote) => format!("{} (as {})", remote.addr().base(), remote.who.0),
                None => cli.open.db.display().to_string(),
            };
            if let Some(remote) = remote {
                source = source.with_remote(remote, cli.open.db.clone());
            }
            let (requests, loaded) = loader::spawn(source)?;
            let mut app = app::App::new(title, now_ms());
            app.set_graphics(
                graphics::Protocol::parse(&cli.graphics)
                    .map_err(|e| anyhow::anyhow!(e))?
                    .unwrap_or_else(|| graphics::Protocol::detect(|k| std::env::var(k).ok())),
            );
            run::run(app, &requests, &loaded)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
