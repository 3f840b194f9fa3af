//! `sallyport proxy TARGET`: OpenSSH's `ProxyCommand`. Standard input and output become a QUIC stream
//! to the gateway, which terminates SSH itself (recording the session) and dials the target:
//! `ssh -o ProxyCommand='sallyport proxy %h' user@target`, and the same for scp and sftp.

use anyhow::{Context, Result, bail};
use sallyport_core::frames::ServerControl;
use sallyport_core::quic::{Frame, Preamble};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::net::Gateway;

/// Runs the proxy until either side ends.
pub async fn run(target: String) -> Result<i32> {
    let gateway = Gateway::connect().await?;
    let (mut send, mut reader) = gateway.open(&Preamble::Proxy { target }).await?;
    match reader.next().await? {
        Some(Frame::Control(json)) => {
            if let Ok(ServerControl::Error { message, .. }) = serde_json::from_slice(&json) {
                bail!("{message}");
            }
            let text = String::from_utf8_lossy(&json);
            if !text.contains("\"ready\"") {
                bail!("the gateway sent an unexpected answer: {text}");
            }
        }
        Some(Frame::Data(_)) => bail!("the gateway sent data before it was ready"),
        None => bail!("the gateway ended the stream before it was ready"),
    }
    let (mut recv, already) = reader.into_raw();
    let upstream = async {
        let mut stdin = tokio::io::stdin();
        let copied = tokio::io::copy(&mut stdin, &mut send).await;
        let _ = send.finish();
        copied.map(|_| ())
    };
    let downstream = async {
        let mut stdout = tokio::io::stdout();
        stdout.write_all(&already).await?;
        stdout.flush().await?;
        tokio::io::copy(&mut recv, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::pin!(upstream, downstream);
    // ssh sends its ProxyCommand SIGHUP when it is done: close the connection politely then.
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    // The session is over when the gateway's side ends; standard input closing only ends ours.
    let result = tokio::select! {
        _ = hangup.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
        result = &mut downstream => result,
        result = &mut upstream => match result {
            Ok(()) => tokio::select! {
                result = &mut downstream => result,
                _ = hangup.recv() => Ok(()),
                _ = terminate.recv() => Ok(()),
            },
            Err(error) => Err(error),
        },
    };
    gateway.close().await;
    result.context("the proxied connection failed")?;
    Ok(0)
}
