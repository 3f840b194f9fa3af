//! One proxied connection's life: the russh server run over the user's stream, the login deadline, the
//! broker's stop signal, and the outcome (the first failure the gateway saw wins over russh's own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use russh::Disconnect;
use russh::server;
use sallyport_core::errors::ErrorKind as UserErrorKind;
use sallyport_relay::{BoxFuture, ProxyConnect, ProxySession, ProxySink, ProxyStream, TargetError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Reverse;
use super::handler::ProxyHandler;
use crate::connect::Handshaken;
use crate::error::seconds;

/// What every part of one proxied connection shares.
pub(crate) struct Shared {
    /// Why the session failed, when the gateway ended it (the first reason wins).
    pub(crate) failure: OnceLock<TargetError>,
    /// Whether the user's ssh has authenticated (the login deadline stops applying).
    pub(super) authenticated: AtomicBool,
    /// Set once the session is being ended (stopped, failed): waits for the target give up at once, so
    /// that the disconnect, which russh sends only between callbacks, is not held up behind them.
    ending: watch::Sender<bool>,
    /// The bridges of channels; aborted when the session ends.
    pub(crate) tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            failure: OnceLock::new(),
            authenticated: AtomicBool::new(false),
            ending: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// How many bridges (commands and forwards) are open; `None` when that cannot be known (a task
    /// panicked holding the lock), which the session cap treats as full.
    pub(super) fn bridges_open(&self) -> Option<usize> {
        self.tasks.lock().ok().map(|tasks| tasks.len())
    }

    /// Marks the session as ending (see `ending`).
    pub(super) fn end(&self) {
        self.ending.send_replace(true);
    }

    /// Resolves once the session is ending.
    pub(super) async fn ended(&self) {
        let mut ending = self.ending.subscribe();
        let _ = ending.wait_for(|ending| *ending).await;
    }

    /// Awaits `answer` (from the target) unless the session ends first (`None`). russh sends the
    /// disconnect of an ending session only between callbacks, so a callback waiting on the target must
    /// not outlive the session's end.
    pub(super) async fn unless_ended<T>(&self, answer: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            answer = answer => Some(answer),
            () = self.ended() => None,
        }
    }

    /// Runs a bridge for as long as the session lives.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap the finished ones so the set stays as small as the open channels.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Ends the session with `error` (recorded as its outcome); the user's ssh hears the reason.
    pub(crate) async fn fail(&self, server: &server::Handle, error: TargetError) {
        let words = error.detail.clone();
        let _ = self.failure.set(error);
        self.end();
        let _ = server
            .disconnect(Disconnect::ByApplication, words, "en".into())
            .await;
    }
}

/// Aborts the bridges when the session's future ends or is dropped.
struct AbortTasks(Arc<Shared>);

impl Drop for AbortTasks {
    fn drop(&mut self) {
        self.0
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

/// A target after its handshake, waiting for the user's ssh.
pub(super) struct Proxied {
    pub(super) config: Arc<server::Config>,
    pub(super) target: Handshaken,
    pub(super) reverse: Arc<Reverse>,
    pub(super) request: ProxyConnect,
}

/// A failure of the user's side.
pub(super) fn client_error(detail: String) -> TargetError {
    TargetError {
        kind: UserErrorKind::BadRequest,
        detail,
    }
}

/// Words for a russh failure on the user's side of the proxy.
fn client_russh_error(error: &russh::Error) -> String {
    match error {
        russh::Error::Version => {
            "the client sent no SSH identification line (is this stream from ssh?)".into()
        }
        russh::Error::Disconnect | russh::Error::HUP => {
            "the client closed the connection during the SSH handshake".into()
        }
        russh::Error::PacketSize(size) => {
            format!("the client sent a packet of {size} bytes, more than allowed")
        }
        russh::Error::NoCommonAlgo { kind, .. } => {
            format!("the client offers no {kind:?} algorithm the gateway accepts")
        }
        other => format!("the client's SSH connection failed: {other}"),
    }
}

impl ProxySession for Proxied {
    fn serve(
        self: Box<Self>,
        stream: Box<dyn ProxyStream>,
        sink: ProxySink,
        mut stop: watch::Receiver<Option<String>>,
    ) -> BoxFuture<'static, Result<(), TargetError>> {
        Box::pin(async move {
            let Proxied {
                config,
                target,
                reverse,
                request,
            } = *self;
            let Handshaken {
                handle,
                host_key: _,
                guard,
                failure: target_failure,
            } = target;
            let shared = Arc::new(Shared::new());
            let _abort = AbortTasks(shared.clone());
            let handler = ProxyHandler {
                target: handle,
                _guard: guard,
                target_failure,
                sink: sink.clone(),
                shared: shared.clone(),
                forwarding: request.forwarding,
                addr: request.addr,
                user: None,
                channels: HashMap::new(),
            };
            let login = request.login_timeout;
            let running = match tokio::time::timeout(
                login,
                server::run_stream(config, stream, handler),
            )
            .await
            {
                Ok(Ok(running)) => running,
                Ok(Err(error)) => return Err(client_error(client_russh_error(&error))),
                Err(_) => {
                    return Err(client_error(format!(
                        "the client sent no SSH identification within {}",
                        seconds(login)
                    )));
                }
            };
            let server = running.handle();
            reverse.attach(server.clone(), sink, shared.clone());
            tokio::pin!(running);
            let deadline = tokio::time::sleep(login);
            tokio::pin!(deadline);
            let mut stopped = false;
            let result = loop {
                tokio::select! {
                    result = &mut running => break result,
                    () = &mut deadline, if !shared.authenticated.load(Ordering::Relaxed) => {
                        shared
                            .fail(&server, client_error(format!(
                                "the client did not authenticate within {}",
                                seconds(login)
                            )))
                            .await;
                        // Set far away: the session ends on the disconnect.
                        deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600));
                    }
                    changed = stop.changed(), if !stopped => {
                        let reason = match changed {
                            Ok(()) => stop.borrow().clone(),
                            Err(_) => Some("the gateway is shutting down".to_owned()),
                        };
                        if let Some(reason) = reason {
                            stopped = true;
                            shared.end();
                            let _ = server
                                .disconnect(Disconnect::ByApplication, format!("sallyport: {reason}"), "en".into())
                                .await;
                        }
                    }
                }
            };
            if let Some(error) = shared.failure.get() {
                return Err(error.clone());
            }
            match result {
                Ok(()) => Ok(()),
                // The user's ssh went away without a goodbye: an ordinary end for a proxied session.
                Err(russh::Error::Disconnect | russh::Error::HUP) => Ok(()),
                Err(russh::Error::IO(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    Ok(())
                }
                Err(error) => Err(client_error(client_russh_error(&error))),
            }
        })
    }
}
