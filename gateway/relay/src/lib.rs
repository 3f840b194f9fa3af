//! The session broker: joins a transport (the portal's WebSocket, later QUIC) to a protocol (SSH, later
//! RDP) with the recorder in between.
//!
//! Every session runs through one pipeline, [`Broker::run`], over a [`SessionKind`]: it takes an
//! [`Authorized`](sallyport_core::policy::Authorized) decision, resolves and vets the target address,
//! claims a session slot, opens the recording before anything is dialled (fail closed), connects,
//! pins or checks the target's key, audits, registers the live session, relays both ways (recording
//! every frame before it is forwarded) and seals the recording. The broker is built with every
//! protocol's connector ([`Connectors`]).
//!
//! The kinds: a [`Terminal`] over a [`TerminalTransport`] (a [`TerminalConnector`] dials, then a
//! [`TerminalChannel`]); a [`Desktop`] (RDP) over a [`DesktopTransport`] with [`DesktopConnector`]
//! and [`DesktopChannel`]; a [`Proxy`] for OpenSSH clients through `sallyport proxy`, where a
//! [`ProxyConnector`] terminates their SSH and records through a [`ProxySink`].
//!
//! [`archive::Archive`] reads the stored recordings for the portal's review API, read-only.
//! [`target_list`] is a user's target list with their own last use of each target and its search;
//! [`dashboard`] is the admin dashboard's snapshot; [`preview`] the admin's "who reaches what" under the same rules as [`access`].
//!
//! This crate never parses protocol bytes itself and never depends on a transport or protocol crate;
//! those depend on it.

pub mod access;
pub mod archive;
mod broker;
pub mod dashboard;
mod desktop;
mod limits;
mod live;
mod pipeline;
#[cfg(test)]
mod pipeline_tests;
pub mod preview;
mod proxy;
mod resolve;
pub mod target_list;
mod terminal;
mod traits;

pub use broker::{Broker, BrokerConfig, Connectors, now_ms};
pub use desktop::{
    Desktop, DesktopChannel, DesktopConfig, DesktopConnect, DesktopConnector, DesktopOpened,
    DesktopTargetEvent, DesktopTransport,
};
pub use live::{
    Counters, LimitHit, LiveHandle, LiveInfo, LivePublisher, LiveSessions, SessionSlot,
};
pub use pipeline::SessionKind;
pub use proxy::{
    PROXY_PROTOCOL, Proxy, ProxyConnect, ProxyConnector, ProxyEvent, ProxyOpened, ProxySession,
    ProxySink, ProxyStream,
};
pub use resolve::{ResolveError, resolve_target};
pub use sallyport_recordings::{
    DesktopEvent, Event, EventSink, FileTransfer, TransferDirection, TransferProtocol,
};
pub use terminal::Terminal;
pub use traits::{
    BoxFuture, TargetError, TargetEvent, TerminalChannel, TerminalConnect, TerminalConnector,
    TerminalOpened, TerminalTransport, Transport, TransportClosed,
};
