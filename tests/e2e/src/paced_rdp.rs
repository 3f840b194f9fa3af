//! A well-behaved RDP source of ours for `cargo xtask bench rdp`: ironrdp's acceptor completes the
//! connection sequence (as for the hostile servers), then the server replays fast-path output captured
//! from a real target, FreeRDP's shadow server scrolling an xterm, faster than it was captured and in a
//! loop. The shadow server caps near 16 frames per second, so it cannot show where the gateway drops
//! below 20 fps; this source offers more frames than the gateway's 30 fps pacing can deliver, and what is
//! left to measure is the gateway.
//!
//! The captured PDUs decode on their own (the gateway negotiates no stateful codec and no bulk
//! compression), so replaying them in a loop to any session of the same desktop size is valid RDP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use ironrdp_acceptor::DesktopSize;
use ironrdp_tokio::FramedWrite;
use sallyport_rdp::{Activation, Observer};

use crate::hostile_rdp::{RdpServer, accept};
use crate::netns::TargetNet;

/// The most PDU bytes a capture keeps.
const MAX_CAPTURE_BYTES: usize = 64 * 1024 * 1024;

/// Fast-path output PDUs with the time each arrived, taken from a live session while switched on.
#[derive(Default)]
pub struct Capture {
    inner: Mutex<CaptureState>,
}

#[derive(Default)]
struct CaptureState {
    on: bool,
    started: Option<Instant>,
    bytes: usize,
    pdus: Vec<(Duration, Vec<u8>)>,
}

impl Capture {
    /// Starts or stops keeping PDUs.
    pub fn set_on(&self, on: bool) {
        self.state().on = on;
    }

    /// The PDUs kept, with their offsets from the first.
    pub fn pdus(&self) -> Vec<(Duration, Vec<u8>)> {
        self.state().pdus.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CaptureState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for Capture {
    fn activated(&self, _: &Activation) -> Result<(), String> {
        Ok(())
    }

    fn server_pdu(&self, fast_path: bool, pdu: &[u8]) -> Result<(), String> {
        let mut state = self.state();
        // Slow-path PDUs carry the share and channel ids of their own connection; only fast-path output
        // replays to another one as it is.
        if !state.on || !fast_path || state.bytes + pdu.len() > MAX_CAPTURE_BYTES {
            return Ok(());
        }
        let started = *state.started.get_or_insert_with(Instant::now);
        state.bytes += pdu.len();
        state.pdus.push((started.elapsed(), pdu.to_vec()));
        Ok(())
    }

    fn keyframe(&self, _: u16, _: u16, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// The replaying server; stopped (its threads joined) on drop.
pub struct PacedRdp {
    server: RdpServer,
}

impl PacedRdp {
    /// Listens on `net.ns_addr():port` and serves every connection a desktop of `size` showing `pdus`,
    /// `speed` times as fast as they were captured, looping, for at most `lifetime`.
    pub fn start(
        net: &TargetNet,
        port: u16,
        size: (u16, u16),
        pdus: Vec<(Duration, Vec<u8>)>,
        speed: f64,
        lifetime: Duration,
    ) -> Result<PacedRdp> {
        anyhow::ensure!(!pdus.is_empty(), "nothing was captured to replay");
        let pdus = Arc::new(pdus);
        let size = DesktopSize {
            width: size.0,
            height: size.1,
        };
        let server = RdpServer::start(net, port, "paced-rdp", lifetime, move |tcp| {
            Box::pin(replay(tcp, size, pdus.clone(), speed))
        })?;
        Ok(PacedRdp { server })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

async fn replay(
    tcp: tokio::net::TcpStream,
    size: DesktopSize,
    pdus: Arc<Vec<(Duration, Vec<u8>)>>,
    speed: f64,
) {
    let Ok(mut framed) = accept(tcp, size).await else {
        return;
    };
    let lap = pdus
        .last()
        .map_or(Duration::ZERO, |(at, _)| *at)
        .div_f64(speed)
        + Duration::from_millis(10);
    let mut lap_start = tokio::time::Instant::now();
    // Bounded by the server's connection lifetime; ends when the client hangs up.
    loop {
        for (at, pdu) in pdus.iter() {
            tokio::time::sleep_until(lap_start + at.div_f64(speed)).await;
            if framed.write_all(pdu).await.is_err() {
                return;
            }
        }
        lap_start += lap;
    }
}
