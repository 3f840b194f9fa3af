//! One session channel of a proxied connection after its command started: the one task that owns both
//! ends (the user's channel and the target's), moving data, EOF, exit statuses, size changes and signals,
//! and recording what passes before it is passed on.
//!
//! What is recorded depends on the channel's use: a shell or a command records its input and output
//! like a terminal session; SFTP and legacy scp record each file moved (name, way, size) instead of the
//! file's bytes; another subsystem records only its byte counts. A transfer stream that cannot be
//! followed ends the whole session (the files would pass unrecorded otherwise).

use std::sync::Arc;

use russh::server;
use russh::{Channel, ChannelMsg};
use sallyport_core::errors::ErrorKind as UserErrorKind;
use sallyport_relay::{Event, ProxyEvent, ProxySink, TargetError, TransferDirection};

use super::session::Shared;
use sallyport_transfer::scp::ScpWatch;
use sallyport_transfer::sftp::SftpWatch;
use sallyport_transfer::{TransferEvent, WatchError};

/// What a channel is used for, which decides what is recorded of it.
pub(super) enum Usage {
    /// A shell or a command: input and output are recorded.
    Terminal,
    /// The SFTP subsystem: files moved are recorded.
    Sftp(Box<SftpWatch>),
    /// A legacy scp command: files moved are recorded.
    Scp(Box<ScpWatch>),
    /// Another subsystem: its byte counts are recorded.
    Opaque,
}

/// A channel whose command the target accepted.
pub(super) struct Bridge {
    pub(super) client: Channel<server::Msg>,
    pub(super) target: Channel<russh::client::Msg>,
    /// Target messages that came before the command's answer.
    pub(super) early: Vec<ChannelMsg>,
    pub(super) usage: Usage,
    pub(super) sink: ProxySink,
    pub(super) shared: Arc<Shared>,
    pub(super) server: server::Handle,
}

/// Why a bridge stopped early.
enum Stop {
    /// One side closed or went away: an ordinary end.
    Closed,
    /// The session must end (recording failed, a transfer stream could not be followed).
    Fail(TargetError),
}

fn watch_failed(error: WatchError) -> Stop {
    let kind = if error.side == "client" {
        UserErrorKind::BadRequest
    } else {
        UserErrorKind::TargetProtocol
    };
    Stop::Fail(TargetError {
        kind,
        detail: error.to_string(),
    })
}

async fn record(sink: &ProxySink, event: impl Into<ProxyEvent>) -> Result<(), Stop> {
    sink.record(event).await.map_err(Stop::Fail)
}

async fn record_transfers(sink: &ProxySink, events: Vec<TransferEvent>) -> Result<(), Stop> {
    for event in events {
        match event {
            TransferEvent::Transfer(transfer) => {
                record(sink, Event::FileTransfer(transfer)).await?
            }
            TransferEvent::Change(what) => {
                record(sink, Event::Marker(format!("file change: {what}"))).await?
            }
        }
    }
    Ok(())
}

impl Bridge {
    /// Runs until either side closes the channel, then closes the other.
    pub(super) async fn run(self) {
        let Bridge {
            client,
            target,
            early,
            mut usage,
            sink,
            shared,
            server,
        } = self;
        let sink = &sink;
        let (mut from_client, to_client) = client.split();
        let (mut from_target, to_target) = target.split();
        let mut up = 0u64;
        let mut down = 0u64;
        let mut early = early.into_iter();
        let result: Result<(), Stop> = async {
            loop {
                // Messages the target sent before the command's answer come first.
                let (client_message, target_message) = match early.next() {
                    Some(message) => (None, Some(Some(message))),
                    None => tokio::select! {
                        message = from_client.wait() => (Some(message), None),
                        message = from_target.wait() => (None, Some(message)),
                    },
                };
                if let Some(message) = client_message {
                    let Some(message) = message else {
                        return Err(Stop::Closed);
                    };
                    match message {
                        ChannelMsg::Data { data } => {
                            up += data.len() as u64;
                            match &mut usage {
                                Usage::Terminal => {
                                    record(sink, Event::Input(data.to_vec())).await?
                                }
                                Usage::Sftp(watch) => {
                                    let events = watch.client_bytes(&data).map_err(watch_failed)?;
                                    record_transfers(sink, events).await?;
                                }
                                Usage::Scp(watch) => {
                                    if watch.direction() == TransferDirection::Upload {
                                        let events =
                                            watch.source_bytes(&data).map_err(watch_failed)?;
                                        record_transfers(sink, events).await?;
                                    }
                                }
                                Usage::Opaque => {}
                            }
                            to_target.data(&data[..]).await.map_err(|_| Stop::Closed)?;
                        }
                        ChannelMsg::ExtendedData { data, ext } => {
                            up += data.len() as u64;
                            if matches!(usage, Usage::Terminal) {
                                record(sink, Event::Input(data.to_vec())).await?;
                            }
                            to_target
                                .extended_data(ext, &data[..])
                                .await
                                .map_err(|_| Stop::Closed)?;
                        }
                        ChannelMsg::Eof => to_target.eof().await.map_err(|_| Stop::Closed)?,
                        ChannelMsg::Close => return Err(Stop::Closed),
                        ChannelMsg::WindowChange {
                            col_width,
                            row_height,
                            pix_width,
                            pix_height,
                        } => {
                            record(
                                sink,
                                Event::Resize {
                                    cols: u16::try_from(col_width).unwrap_or(u16::MAX),
                                    rows: u16::try_from(row_height).unwrap_or(u16::MAX),
                                },
                            )
                            .await?;
                            to_target
                                .window_change(col_width, row_height, pix_width, pix_height)
                                .await
                                .map_err(|_| Stop::Closed)?;
                        }
                        ChannelMsg::Signal { signal } => {
                            record(sink, Event::Marker(format!("signal {signal:?}"))).await?;
                            to_target.signal(signal).await.map_err(|_| Stop::Closed)?;
                        }
                        // Requests are answered by the handler (after the command, with a refusal); their
                        // copies here are ignored, as are window adjustments.
                        _ => {}
                    }
                }
                if let Some(message) = target_message {
                    let Some(message) = message else {
                        return Err(Stop::Closed);
                    };
                    match message {
                        ChannelMsg::Data { data } => {
                            down += data.len() as u64;
                            match &mut usage {
                                Usage::Terminal => {
                                    record(sink, Event::Output(data.to_vec())).await?
                                }
                                Usage::Sftp(watch) => {
                                    watch.server_bytes(&data).map_err(watch_failed)?
                                }
                                Usage::Scp(watch) => {
                                    if watch.direction() == TransferDirection::Download {
                                        let events =
                                            watch.source_bytes(&data).map_err(watch_failed)?;
                                        record_transfers(sink, events).await?;
                                    }
                                }
                                Usage::Opaque => {}
                            }
                            to_client.data(&data[..]).await.map_err(|_| Stop::Closed)?;
                        }
                        ChannelMsg::ExtendedData { data, ext } => {
                            down += data.len() as u64;
                            // Standard error is text in every use: recorded as output.
                            if !matches!(usage, Usage::Opaque) {
                                record(sink, Event::Output(data.to_vec())).await?;
                            }
                            to_client
                                .extended_data(ext, &data[..])
                                .await
                                .map_err(|_| Stop::Closed)?;
                        }
                        ChannelMsg::Eof => to_client.eof().await.map_err(|_| Stop::Closed)?,
                        ChannelMsg::Close => return Err(Stop::Closed),
                        ChannelMsg::ExitStatus { exit_status } => {
                            record(sink, Event::Marker(format!("exit status {exit_status}")))
                                .await?;
                            to_client
                                .exit_status(exit_status)
                                .await
                                .map_err(|_| Stop::Closed)?;
                        }
                        ChannelMsg::ExitSignal {
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        } => {
                            record(
                                sink,
                                Event::Marker(format!("killed by signal {signal_name:?}")),
                            )
                            .await?;
                            let _ = server
                                .exit_signal_request(
                                    to_client.id(),
                                    signal_name,
                                    core_dumped,
                                    sallyport_transfer::clean_name(error_message.as_bytes()),
                                    lang_tag,
                                )
                                .await;
                        }
                        // Replies to requests made after the command are not expected (none are passed on).
                        _ => {}
                    }
                }
            }
        }
        .await;
        // Whatever ended the channel, a transfer in the middle of a file was cut off.
        let cut_off = match &mut usage {
            Usage::Sftp(watch) => watch.finish(),
            Usage::Scp(watch) => watch.finish(),
            Usage::Terminal | Usage::Opaque => Vec::new(),
        };
        let recorded = record_transfers(sink, cut_off).await;
        if matches!(usage, Usage::Opaque) {
            let _ = record(
                sink,
                Event::Marker(format!(
                    "subsystem channel closed: {up} bytes up, {down} bytes down"
                )),
            )
            .await;
        }
        let _ = to_target.close().await;
        let _ = to_client.close().await;
        match (result, recorded) {
            (Err(Stop::Fail(error)), _) | (_, Err(Stop::Fail(error))) => {
                let _ = record(
                    sink,
                    Event::Marker(format!("session ended: {}", error.detail)),
                )
                .await;
                shared.fail(&server, error).await;
            }
            _ => {}
        }
    }
}
