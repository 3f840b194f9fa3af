//! The session broker: joins a transport (the portal's WebSocket, later QUIC) to a protocol (SSH, later
//! RDP) with the recorder in between.
//!
//! A transport implements [`TerminalTransport`] (frames to and from the user); a protocol implements
//! [`TerminalConnector`] (dial a target, then a [`TerminalChannel`]). [`Broker::run_terminal`] takes an
//! [`Authorized`](sallyport_core::policy::Authorized) decision, resolves and vets the target address,
//! opens the recording before anything is dialled (fail closed), connects, pins or checks the host key
//! and relays both ways, recording every frame before it is forwarded.
//!
//! Desktops (RDP) take the same path through [`Broker::run_desktop`] with [`DesktopTransport`],
//! [`DesktopConnector`] and [`DesktopChannel`]. OpenSSH clients through `sallyport proxy` take it
//! through [`Broker::run_proxy`]: a [`ProxyConnector`] terminates their SSH and records through a
//! [`ProxySink`].
//!
//! [`archive::Archive`] reads the stored recordings for the portal's review API, read-only.
//!
//! This crate never parses protocol bytes itself and never depends on a transport or protocol crate;
//! those depend on it.

pub mod access;
pub mod archive;
mod broker;
mod desktop;
mod live;
mod proxy;
mod resolve;
mod traits;

pub use broker::{Broker, BrokerConfig, now_ms};
pub use desktop::{
    DesktopChannel, DesktopConfig, DesktopConnect, DesktopConnector, DesktopOpened,
    DesktopTargetEvent, DesktopTransport,
};
pub use live::{
    Counters, LimitHit, LiveHandle, LiveInfo, LivePublisher, LiveSessions, SessionSlot,
};
pub use proxy::{
    PROXY_PROTOCOL, ProxyConnect, ProxyConnector, ProxyEvent, ProxyOpened, ProxySession, ProxySink,
    ProxyStream,
};
pub use resolve::{ResolveError, resolve_target};
pub use sallyport_recordings::{
    DesktopEvent, EventSink, FileTransfer, TransferDirection, TransferProtocol,
};
pub use traits::{
    BoxFuture, TargetError, TargetEvent, TerminalChannel, TerminalConnect, TerminalConnector,
    TerminalOpened, TerminalTransport, TransportClosed,
};
