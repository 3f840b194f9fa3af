//! The HTTPS server: a TCP accept loop with connection caps, rustls handshakes with a deadline, and
//! HTTP/1.1 connections with header and request deadlines, each connection in its own task so a slow
//! client holds up nobody else.
//!
//! What a slow or greedy client meets, in order:
//!
//! 1. **Connection caps**, right after accept: at most [`PortalConfig::max_connections_per_source`]
//!    open connections per source (an IPv4 address or an IPv6 /64, as the login throttle counts them)
//!    and [`PortalConfig::max_connections`] in all. A connection over a cap is closed at once, before
//!    any TLS work. A connection leaves the count when it closes or becomes a WebSocket (by then it is
//!    logged in and authorized, and the relay owns it).
//! 2. **TLS handshake deadline** ([`PortalConfig::tls_handshake_timeout`]).
//! 3. **Header deadline** ([`PortalConfig::header_read_timeout`]), enforced by hyper with a tokio
//!    timer. hyper starts it whenever it waits for a request head: right after the handshake, and
//!    again after each answer on a keep-alive connection, so it is also the keep-alive idle timeout.
//!    The server speaks HTTP/1.1 only (as ALPN says): hyper-util's auto-detecting builder first reads
//!    the HTTP/2 preface with no deadline at all, which would let a silent client sit forever.
//! 4. **Request deadline** ([`PortalConfig::request_timeout`]) on reading the body and producing the
//!    answer, which bounds clients that send a body one byte at a time.
//!
//! [`PortalConfig::max_connections_per_source`]: crate::PortalConfig::max_connections_per_source
//! [`PortalConfig::max_connections`]: crate::PortalConfig::max_connections
//! [`PortalConfig::tls_handshake_timeout`]: crate::PortalConfig::tls_handshake_timeout
//! [`PortalConfig::header_read_timeout`]: crate::PortalConfig::header_read_timeout
//! [`PortalConfig::request_timeout`]: crate::PortalConfig::request_timeout

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use sallyport_core::throttle::{IpNet, source_net};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::Portal;

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Its source already has the most connections allowed.
    Source,
    /// The portal already has the most connections allowed.
    Total,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Source => "too many connections from this source",
            Refusal::Total => "too many connections",
        }
    }
}

#[derive(Debug, Default)]
struct OpenConnections {
    by_source: HashMap<IpNet, usize>,
    total: usize,
}

/// Counts open connections by source and in all. The table holds only sources with an open
/// connection, so it is bounded by the global cap.
#[derive(Debug)]
struct ConnectionLimits {
    per_source: usize,
    total: usize,
    open: Mutex<OpenConnections>,
}

/// One counted connection; dropping it gives the place back.
#[derive(Debug)]
struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    source: IpNet,
}

impl ConnectionLimits {
    fn new(per_source: usize, total: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            per_source,
            total,
            open: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a new connection from `addr`, unless that would break a cap.
    fn try_acquire(self: &Arc<Self>, addr: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let source = source_net(addr);
        let mut open = self.lock();
        if open.total >= self.total {
            return Err(Refusal::Total);
        }
        let count = open.by_source.entry(source).or_insert(0);
        if *count >= self.per_source {
            if *count == 0 {
                open.by_source.remove(&source);
            }
            return Err(Refusal::Source);
        }
        *count += 1;
        open.total += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            source,
        })
    }

    #[cfg(test)]
    fn counts(&self, addr: IpAddr) -> (usize, usize) {
        let open = self.lock();
        let source = open.by_source.get(&source_net(addr)).copied().unwrap_or(0);
        (source, open.total)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// The answer when a request's body or handler overran the request deadline.
fn request_timed_out() -> Response {
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        "request timed out: it took too long to arrive",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves the portal on `listener` with `tls` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    portal: Arc<Portal>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    // Provider accounts are checked again while the portal serves (it holds only a weak handle).
    let rechecks = tokio::spawn(crate::sso::recheck::run(Arc::downgrade(&portal)));
    let router = portal.router();
    let config = &portal.config;
    let handshake_timeout = config.tls_handshake_timeout;
    let header_timeout = config.header_read_timeout;
    let request_timeout = config.request_timeout;
    let limits = ConnectionLimits::new(config.max_connections_per_source, config.max_connections);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (tcp, client) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match limits.try_acquire(client.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                // Closed before any TLS work; debug only, as a flood would otherwise flood the log.
                debug!(%client, reason = refusal.as_str(), "connection refused");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let http = http.clone();
        tokio::spawn(async move {
            // Held until the connection closes or hands its stream to a WebSocket.
            let _slot = slot;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return debug!(%client, %error, "tls handshake failed"),
                Err(_) => return debug!(%client, "tls handshake timed out"),
            };
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(client));
                    let answer = router.clone().oneshot(request);
                    async move {
                        match tokio::time::timeout(request_timeout, answer).await {
                            Ok(answer) => answer,
                            Err(_) => {
                                debug!(%client, "request timed out");
                                Ok(request_timed_out())
                            }
                        }
                    }
                });
            if let Err(error) = http
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                debug!(%client, %error, "connection ended with an error");
            }
        });
    }
    rechecks.abort();
    info!("portal stopped accepting connections");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connections_are_capped_per_source_and_in_all() {
        let limits = ConnectionLimits::new(2, 5);
        let a1 = limits.try_acquire(ip("192.0.2.1")).unwrap();
        let a2 = limits.try_acquire(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            limits.try_acquire(ip("192.0.2.1")).unwrap_err(),
            Refusal::Source
        );
        // Another source still gets in; one IPv6 /64 is one source.
        let b1 = limits.try_acquire(ip("2001:db8::1")).unwrap();
        let _b2 = limits.try_acquire(ip("2001:db8::ffff:2")).unwrap();
        assert_eq!(
            limits.try_acquire(ip("2001:db8::3")).unwrap_err(),
            Refusal::Source
        );
        let _c1 = limits.try_acquire(ip("192.0.2.3")).unwrap();
        assert_eq!(limits.counts(ip("192.0.2.1")), (2, 5));
        // The global cap holds for new sources too, and refusals count nothing.
        assert_eq!(
            limits.try_acquire(ip("192.0.2.4")).unwrap_err(),
            Refusal::Total
        );
        assert_eq!(limits.counts(ip("192.0.2.4")), (0, 5));
        // Closing gives the place back, to that source and to the total.
        drop(a1);
        assert_eq!(limits.counts(ip("192.0.2.1")), (1, 4));
        let _a3 = limits.try_acquire(ip("192.0.2.1")).unwrap();
        drop(b1);
        let _d1 = limits.try_acquire(ip("192.0.2.4")).unwrap();
        drop(a2);
        assert_eq!(limits.counts(ip("192.0.2.1")), (1, 4));
    }

    #[test]
    fn the_table_forgets_sources_with_nothing_open() {
        let limits = ConnectionLimits::new(1, 100);
        let slots: Vec<_> = (0..50u8)
            .map(|i| limits.try_acquire(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(limits.lock().by_source.len(), 50);
        drop(slots);
        assert_eq!(limits.lock().by_source.len(), 0);
        assert_eq!(limits.counts(ip("10.0.0.1")), (0, 0));
        // A cap of zero refuses everything without leaving entries behind.
        let closed = ConnectionLimits::new(0, 100);
        assert_eq!(
            closed.try_acquire(ip("10.0.0.1")).unwrap_err(),
            Refusal::Source
        );
        assert!(closed.lock().by_source.is_empty());
    }
}
