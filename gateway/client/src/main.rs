//! `sallyport`: the command-line client of a Sallyport gateway. It logs in over HTTPS (the portal's
//! credentials and TOTP, for a short-lived client certificate), then speaks QUIC to the gateway on the
//! same port: target lists, terminal sessions recorded like the browser's, an SSH proxy for OpenSSH, logout.

mod login;
mod net;
mod profile;
mod prompt;
mod proxy;
mod ssh;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use sallyport_core::quic::{Preamble, StatusInfo, TargetInfo};

/// Reach machines of a private network through a Sallyport gateway. Every session is recorded.
#[derive(Parser, Debug)]
#[command(name = "sallyport", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log in to a gateway: pins its certificate on first use, asks for your portal password (and
    /// authenticator code) or signs you in at an identity provider (--provider) or in your browser
    /// (--browser), and stores a short-lived client certificate (0600).
    Login {
        /// The gateway, e.g. https://bastion.example.com
        gateway: String,
        /// Your portal username (asked when not given).
        #[arg(long, short)]
        username: Option<String>,
        /// The gateway certificate's SHA-256 fingerprint, to pin it without asking.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Forget the pinned fingerprint of this gateway and pin anew.
        #[arg(long)]
        repin: bool,
        /// Sign in with this identity provider of the gateway instead of a portal password: in
        /// your browser when one can be opened here, otherwise by confirming a code at the
        /// provider's page, in any browser.
        #[arg(long, conflicts_with = "username")]
        provider: Option<String>,
        /// Sign in in your browser, any way the portal's login page offers (a provider, a passkey,
        /// a password and its second factor).
        #[arg(long, conflicts_with = "username")]
        browser: bool,
        /// With --provider: confirm a code at the provider's page instead of opening a browser here.
        #[arg(long, requires = "provider", conflicts_with = "browser")]
        device: bool,
    },
    /// Log out: the gateway revokes the certificate and the local key and certificate are deleted.
    Logout,
    /// Show who you are logged in as, where, and for how long.
    Status,
    /// List the targets you may reach.
    Targets,
    /// Open a terminal on a target through the gateway (recorded).
    Ssh {
        /// [user@]target: the account on the target and the target's name.
        destination: String,
        /// The account on the target (instead of user@).
        #[arg(short = 'l', long = "login")]
        login: Option<String>,
        /// Authenticate to the target with this private key file instead of a password.
        #[arg(short = 'i', long = "identity")]
        identity: Option<PathBuf>,
    },
    /// Carry OpenSSH's connection to a target (its ProxyCommand), recorded by the gateway.
    ///
    /// Use: ssh -o ProxyCommand='sallyport proxy %h' user@TARGET (scp and sftp the same way), or in
    /// ~/.ssh/config: Host TARGET / ProxyCommand sallyport proxy %h. The gateway answers as the SSH
    /// server (its own host key, the same for every target, printed at its start) and passes your
    /// password or keyboard-interactive answers to the target; keys and agents cannot be relayed. Port,
    /// agent and X11 forwarding are refused unless a policy allows them.
    Proxy {
        /// The target's name (sallyport targets lists them).
        target: String,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "sallyport",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sallyport: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sallyport: {error:#}");
            1
        }
    };
    // Standard input may still be read by a blocking thread; do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

async fn run(command: Command) -> Result<i32> {
    match command {
        Command::Login {
            gateway,
            username,
            fingerprint,
            repin,
            provider,
            browser,
            device,
        } => {
            login::run(login::LoginOptions {
                gateway,
                username,
                fingerprint,
                repin,
                provider,
                browser,
                device,
            })
            .await?;
            Ok(0)
        }
        Command::Logout => logout().await,
        Command::Status => status().await,
        Command::Targets => targets().await,
        Command::Ssh {
            destination,
            login,
            identity,
        } => {
            let options = ssh::SshOptions {
                destination,
                login,
                identity,
            };
            // As with ssh, a session that could not run exits with 255, apart from the remote's statuses.
            match ssh::run(options).await {
                Ok(status) => Ok(status),
                Err(error) => {
                    eprintln!("sallyport: {error:#}");
                    Ok(ssh::FAILED)
                }
            }
        }
        Command::Proxy { target } => match proxy::run(target).await {
            Ok(status) => Ok(status),
            // ssh shows its ProxyCommand's standard error: say what happened, then leave as ssh does.
            Err(error) => {
                eprintln!("sallyport: {error:#}");
                Ok(ssh::FAILED)
            }
        },
        Command::Completions { .. } => Ok(0),
    }
}

async fn targets() -> Result<i32> {
    let gateway = net::Gateway::connect().await?;
    let json = gateway.request(&Preamble::Targets).await?;
    gateway.close().await;
    let targets: Vec<TargetInfo> =
        serde_json::from_str(&json).context("the gateway's target list is not understood")?;
    if targets.is_empty() {
        println!("You may reach no targets yet; ask an administrator for a policy.");
        return Ok(0);
    }
    let width = targets
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<width$}  {:<8}  ADDRESS", "NAME", "PROTOCOL");
    for target in targets {
        println!(
            "{:<width$}  {:<8}  {}:{}",
            target.name, target.protocol, target.host, target.port
        );
    }
    Ok(0)
}

async fn status() -> Result<i32> {
    let dir = profile::dir()?;
    let Some(saved) = profile::load(&dir)? else {
        println!("Not logged in. Run: sallyport login https://GATEWAY");
        return Ok(1);
    };
    println!("Gateway:     {}", saved.gateway);
    println!("Fingerprint: {}", saved.fingerprint);
    let gateway = match net::Gateway::connect().await {
        Ok(gateway) => gateway,
        Err(error) => {
            println!("Logged in:   no ({error:#})");
            return Ok(1);
        }
    };
    let result = gateway.request(&Preamble::Status).await;
    gateway.close().await;
    match result {
        Ok(json) => {
            let info: StatusInfo =
                serde_json::from_str(&json).context("the gateway's status is not understood")?;
            println!("Logged in:   yes, as {} ({})", info.username, info.role);
            println!("Valid for:   {}", login::remaining(info.expires_at_ms));
            Ok(0)
        }
        Err(error) => {
            println!("Logged in:   no ({error:#})");
            Ok(1)
        }
    }
}

async fn logout() -> Result<i32> {
    let dir = profile::dir()?;
    let saved = profile::require(&dir)?;
    let revoked = match net::Gateway::connect().await {
        Ok(gateway) => {
            let result = gateway.request(&Preamble::Logout).await;
            gateway.close().await;
            result.map(|_| ())
        }
        Err(error) => Err(error),
    };
    profile::forget_credentials(&dir)?;
    match revoked {
        Ok(()) => {
            println!(
                "Logged out of {}; the certificate is revoked.",
                saved.gateway
            );
            Ok(0)
        }
        Err(error) => {
            println!(
                "Deleted the local key and certificate, but the gateway could not revoke the certificate ({error:#})."
            );
            Ok(1)
        }
    }
}
