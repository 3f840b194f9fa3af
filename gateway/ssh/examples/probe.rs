//! Development probe: connects to a real SSH server through `sallyport_ssh`, runs a command line in the PTY shell
//! and prints every event, or the error and its kind.
//!
//! ```text
//! cargo run -p sallyport-ssh --example probe -- 127.0.0.1:2299 spdev --password devpass
//! cargo run -p sallyport-ssh --example probe -- 127.0.0.1:2299 spdev --key ~/.ssh/id_ed25519 [--passphrase P]
//!     [--pin "ssh-ed25519 AAAA..."] [--cmd "echo hi; exit 3"] [--timeout 10]
//! ```
//!
//! `RUST_LOG=sallyport_ssh=debug` shows the negotiated algorithms, strict KEX and the host key decision.
//! Credentials on the command line are for a throwaway development account only.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use sallyport_ssh::{ConnectRequest, Credential, HostKey, TerminalEvent, connect};

fn usage() -> Box<dyn Error> {
    "usage: probe ADDR USER (--password P | --key FILE [--passphrase P]) [--pin LINE] [--cmd CMD] [--timeout SECS]"
        .into()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().ok_or_else(usage)?.parse()?;
    let username = args.next().ok_or_else(usage)?;
    let (mut password, mut key_file, mut passphrase, mut pin) = (None, None, None, None);
    let mut cmd = "echo hi; exit 3".to_owned();
    let mut timeout = 10;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--password" => password = Some(value),
            "--key" => key_file = Some(value),
            "--passphrase" => passphrase = Some(value),
            "--pin" => pin = Some(HostKey::from_openssh(&value)?),
            "--cmd" => cmd = value,
            "--timeout" => timeout = value.parse()?,
            _ => return Err(usage()),
        }
    }
    let credential = match (password, key_file) {
        (Some(password), None) => Credential::Password(password),
        (None, Some(file)) => Credential::PrivateKey {
            pem: std::fs::read_to_string(file)?,
            passphrase,
        },
        _ => return Err(usage()),
    };

    let request = ConnectRequest {
        addr,
        username,
        credential,
        pinned_host_key: pin,
        term: "xterm-256color".into(),
        cols: 80,
        rows: 24,
        connect_timeout: Duration::from_secs(timeout),
    };
    println!("request: {request:?}");
    let connected = match connect(request).await {
        Ok(connected) => connected,
        Err(error) => {
            println!("error: kind={:?} message={error}", error.kind());
            return Ok(());
        }
    };
    println!(
        "host key: {} ({})",
        connected.host_key,
        connected.host_key.fingerprint()
    );
    let mut session = connected.session;
    session.resize(100, 30).await?;
    session.write(format!("{cmd}\n").as_bytes()).await?;

    let deadline = tokio::time::sleep(Duration::from_secs(timeout));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = session.next_event() => match event {
                Some(TerminalEvent::Output(data)) => println!("output: {:?}", String::from_utf8_lossy(&data)),
                Some(other) => println!("event: {other:?}"),
                None => break,
            },
            () = &mut deadline => {
                println!("no close within {timeout} s; closing");
                break;
            }
        }
    }
    session.close().await;
    Ok(())
}
