//! `sallyport proxy TARGET`: OpenSSH's `ProxyCommand`. Standard input and output carry the SSH connection of
//! the user's own ssh, scp or sftp; they travel to the gateway in data frames on one QUIC stream, and the
//! gateway terminates SSH itself (recording the session) and dials the target:
//! `ssh -o ProxyCommand='sallyport proxy %h' user@target`. The gateway's verdict comes first, so a refusal
//! or an unreachable target is printed in words before ssh would only see a closed connection.

use anyhow::{Context, Result, bail};
use quinn::SendStream;
use sallyport_core::frames::ServerControl;
use sallyport_core::quic::{Frame, FrameType, Preamble};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::net::{FrameReader, Gateway};

/// Bytes of standard input sent per data frame (the gateway accepts up to 64 KiB).
const CHUNK: usize = 32 * 1024;

/// Copies standard input into data frames until it ends.
async fn upstream(send: &mut SendStream) -> Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stdin
            .read(&mut buf)
            .await
            .context("reading standard input")?;
        if n == 0 {
            let _ = send.finish();
            return Ok(());
        }
        let data = buf.get(..n).unwrap_or_default();
        send.write_all(&Frame::encode(FrameType::Data, data))
            .await
            .context("the gateway stopped accepting data")?;
    }
}

/// Copies data frames to standard output until the stream ends; an error frame becomes the error. Once
/// standard output is gone (ssh exited), frames are still read, for the gateway's last word.
async fn downstream(reader: &mut FrameReader) -> Result<()> {
    let mut stdout = Some(tokio::io::stdout());
    while let Some(frame) = reader.next().await? {
        match frame {
            Frame::Data(data) => {
                if let Some(out) = stdout.as_mut() {
                    let written = async {
                        out.write_all(&data).await?;
                        out.flush().await
                    };
                    if written.await.is_err() {
                        stdout = None;
                    }
                }
            }
            Frame::Control(json) => match serde_json::from_slice::<ServerControl>(&json) {
                Ok(ServerControl::Error { message, .. }) => bail!("{message}"),
                Ok(_) => {}
                Err(_) => bail!("the gateway sent a message this client does not understand"),
            },
        }
    }
    Ok(())
}

/// Runs the proxy until either side ends; the exit status is 0 for an ordinary end.
pub async fn run(target: String) -> Result<i32> {
    if target.is_empty() || target.contains('@') {
        bail!(
            "give the target's name (sallyport targets lists them), as in: \
             ssh -o ProxyCommand='sallyport proxy %h' user@TARGET"
        );
    }
    let gateway = Gateway::connect().await?;
    let (mut send, mut reader) = gateway
        .open(&Preamble::Proxy {
            target: target.clone(),
        })
        .await?;
    reader.wait_connected(&target).await?;
    // ssh sends its ProxyCommand SIGHUP when it is done with the connection.
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let up = upstream(&mut send);
    let down = downstream(&mut reader);
    tokio::pin!(up, down);
    let mut up_done = false;
    // How long the gateway may take to end the stream once our side is done, so that its last word (an
    // error, such as why it ended the session) is still printed.
    let last_word = std::time::Duration::from_secs(2);
    // The session is over when the gateway's side ends; standard input closing only ends ours.
    let result = loop {
        tokio::select! {
            _ = hangup.recv() => {
                // ssh is gone: its end of standard input closes, which ends our side of the stream;
                // then the gateway ends the session and may say why.
                let last = async {
                    loop {
                        tokio::select! {
                            result = &mut down => return result,
                            _ = &mut up, if !up_done => up_done = true,
                        }
                    }
                };
                break tokio::time::timeout(last_word, last).await.unwrap_or(Ok(()));
            }
            _ = terminate.recv() => break Ok(()),
            result = &mut down => break result,
            result = &mut up, if !up_done => {
                up_done = true;
                if let Err(error) = result {
                    // The gateway may have said why it stopped: prefer its words.
                    break match tokio::time::timeout(last_word, &mut down).await {
                        Ok(Err(words)) => Err(words),
                        _ => Err(error),
                    };
                }
            }
        }
    };
    gateway.close().await;
    result.context("the proxied ssh connection ended")?;
    Ok(0)
}
