//! Target-side RDP for Sallyport over ironrdp: the gateway is the RDP client of the target.
//!
//! [`connect`] dials a vetted address, negotiates TLS or CredSSP/NLA (standard RDP security is refused
//! with a clear reason), pins the target's TLS key on first use and refuses a changed key inside the TLS
//! handshake, before any credential is sent ([`tls`]), then runs the RDP connection sequence. The
//! [`RdpSession`] it returns owns one task that decodes the target's graphics into the gateway's
//! framebuffer and turns damage into display updates of sallyport-core's desktop stream; it takes input
//! (scancodes with extended keys, Unicode, mouse buttons, wheel, movement) and resizes through the display
//! control channel. An [`Observer`] sees every server PDU before it is decoded, which is how sessions are
//! recorded, plus periodic keyframes of the framebuffer.
//!
//! Every fast-path frame is checked by the gateway's own strict rules before ironrdp (which skips
//! malformed updates) decodes it: a malformed or out-of-range update ends the session with an error.
//!
//! The session's logic that needs no socket is sans-io and unit-tested: `pacer` (when keyframes and
//! resizes go out; time is a parameter), `input` (browser input events to fast-path input) and
//! [`encode`] (damaged rectangles as solid colour, PNG or JPEG; the PNG keyframes).
//!
//! [`RdpConnector`] plugs this into the relay's broker.

mod clipboard;
mod connect;
pub mod encode;
mod error;
mod input;
mod pacer;
mod relay_adapter;
mod session;
mod strict;
pub mod tls;

pub use connect::{ConnectRequest, Connected, connect};
pub use error::RdpError;
pub use relay_adapter::{MAX_KEYFRAME, RdpConnector};
pub use session::{Activation, MAX_PIXELS, Observer, RdpSession, SessionEnd, SessionEvent};
