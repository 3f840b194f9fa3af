//! Hostile RDP targets: a server of ours inside a [`TargetNet`] that breaks RDP on purpose, one way per
//! known class of client-side bugs (FreeRDP's server-to-client CVEs, guacd's): malformed and zero-length
//! fast-path frames, bitmap size overflows, out-of-range rectangles and surface commands, decoder bombs for
//! the interleaved and planar codecs, bulk-compression bombs, pointer and palette overflows, garbage drawing
//! orders, endless fragment chains, and breakage before TLS.
//!
//! Most cases complete a real RDP connection sequence first (ironrdp's acceptor over TLS with a throwaway
//! certificate), then send their malicious PDU, so they reach the gateway's decoder exactly as a compromised
//! server would. Every connection is served by its own thread with a current-thread runtime, ends after
//! [`CONNECTION_LIFETIME`] or when the client hangs up, and writes at most [`MAX_BYTES`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use ironrdp_acceptor::{Acceptor, BeginResult, DesktopSize};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::capability_sets::{
    self, CapabilitySet, GeneralExtraFlags, InputFlags, VirtualChannelFlags,
};
use ironrdp_tokio::{FramedWrite, TokioFramed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::TargetNet;
use crate::tunnel::NsSockets;

/// The longest a hostile connection is served.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The most bytes a hostile server writes on one connection.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RdpAttack {
    /// Before TLS: bytes that are not an X.224 Connection Confirm.
    GarbageConfirm,
    /// Before TLS: a TPKT header announcing 65535 bytes, then silence.
    TruncatedTpkt,
    /// A fast-path frame whose length is shorter than its own header (zero-length frame).
    FastPathZeroLength,
    /// A fast-path update claiming 65535 bytes inside a short frame.
    FastPathUpdateOverrun,
    /// A bitmap update of 65535×65535 pixels with a few bytes of data (size overflow).
    BitmapHugeDimensions,
    /// A bitmap whose destination lies far outside the desktop.
    BitmapOutsideDesktop,
    /// A bitmap update announcing 65535 rectangles.
    BitmapRectangleCountBomb,
    /// An interleaved (RLE) compressed bitmap of garbage that claims a large output.
    InterleavedRleGarbage,
    /// A planar compressed bitmap of garbage.
    PlanarGarbage,
    /// A fast-path update flagged as bulk-compressed (none was negotiated), with garbage.
    BulkCompressionBomb,
    /// A surface-bits command with a 65535×65535 destination.
    SurfaceBitsOutOfRange,
    /// A surface-bits command with an unknown codec.
    SurfaceBitsUnknownCodec,
    /// A color pointer of 65535×65535 with short masks.
    PointerHuge,
    /// A palette update announcing 65535 colors.
    PaletteOverflow,
    /// A drawing-orders update of garbage announcing 65535 orders.
    OrdersGarbage,
    /// Fast-path fragments that never end (reassembly memory).
    EndlessFragments,
    /// A slow-path (X.224) frame of garbage inside a valid TPKT.
    SlowPathGarbage,
}

impl RdpAttack {
    /// Every attack.
    pub const ALL: [RdpAttack; 17] = [
        RdpAttack::GarbageConfirm,
        RdpAttack::TruncatedTpkt,
        RdpAttack::FastPathZeroLength,
        RdpAttack::FastPathUpdateOverrun,
        RdpAttack::BitmapHugeDimensions,
        RdpAttack::BitmapOutsideDesktop,
        RdpAttack::BitmapRectangleCountBomb,
        RdpAttack::InterleavedRleGarbage,
        RdpAttack::PlanarGarbage,
        RdpAttack::BulkCompressionBomb,
        RdpAttack::SurfaceBitsOutOfRange,
        RdpAttack::SurfaceBitsUnknownCodec,
        RdpAttack::PointerHuge,
        RdpAttack::PaletteOverflow,
        RdpAttack::OrdersGarbage,
        RdpAttack::EndlessFragments,
        RdpAttack::SlowPathGarbage,
    ];

    /// Whether the attack happens before TLS (no connection sequence).
    pub fn before_tls(self) -> bool {
        matches!(self, RdpAttack::GarbageConfirm | RdpAttack::TruncatedTpkt)
    }
}

/// A hostile RDP server; stopped (and its threads joined) on drop.
pub struct HostileRdp {
    server: RdpServer,
}

impl HostileRdp {
    /// Listens on `net.ns_addr():port` inside the namespace and serves every connection with `attack`.
    pub fn start(net: &TargetNet, port: u16, attack: RdpAttack) -> Result<HostileRdp> {
        let server = RdpServer::start(
            net,
            port,
            &format!("hostile-rdp-{attack:?}"),
            CONNECTION_LIFETIME,
            move |tcp| Box::pin(run(tcp, attack)),
        )?;
        Ok(HostileRdp { server })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// What an [`RdpServer`] does with one accepted connection (on the connection's own thread, so the future
/// need not be `Send`; ironrdp's acceptor futures are not).
pub(crate) type Handler = Arc<
    dyn Fn(tokio::net::TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        + Send
        + Sync,
>;

/// A TCP server of ours inside a namespace: one thread per connection with a current-thread runtime,
/// each connection ended after `lifetime` or when the server stops. Dropping it stops the server and
/// joins every thread.
pub(crate) struct RdpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RdpServer {
    pub(crate) fn start<F>(
        net: &TargetNet,
        port: u16,
        name: &str,
        lifetime: Duration,
        handler: F,
    ) -> Result<RdpServer>
    where
        F: Fn(tokio::net::TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
            + Send
            + Sync
            + 'static,
    {
        let addr = SocketAddr::from((net.ns_addr(), port));
        let listener = {
            let ns = NsSockets::enter(net.name())?;
            ns.listen(addr)?
        };
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(handler);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || accept_loop(listener, handler, lifetime, stop))?
        };
        Ok(RdpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, handler: Handler, lifetime: Duration, stop: Arc<AtomicBool>) {
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let stop = stop.clone();
                let handler = handler.clone();
                if let Ok(worker) = std::thread::Builder::new()
                    .name("rdp-server-conn".into())
                    .spawn(move || serve(stream, handler, lifetime, stop))
                {
                    workers.push(worker);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
}

fn serve(stream: std::net::TcpStream, handler: Handler, lifetime: Duration, stop: Arc<AtomicBool>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let _ = stream.set_nonblocking(true);
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            return;
        };
        let stopped = async {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(lifetime, handler(stream)) => {}
            () = stopped => {}
        }
    });
}

fn capabilities(size: DesktopSize) -> Vec<CapabilitySet> {
    vec![
        CapabilitySet::General(capability_sets::General {
            extra_flags: GeneralExtraFlags::FASTPATH_OUTPUT_SUPPORTED,
            ..Default::default()
        }),
        CapabilitySet::Bitmap(capability_sets::Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: size.width,
            desktop_height: size.height,
            desktop_resize_flag: true,
            drawing_flags: capability_sets::BitmapDrawingFlags::empty(),
        }),
        CapabilitySet::Order(capability_sets::Order::new(
            capability_sets::OrderFlags::empty(),
            capability_sets::OrderSupportExFlags::empty(),
            2048,
            224,
        )),
        CapabilitySet::SurfaceCommands(capability_sets::SurfaceCommands {
            flags: capability_sets::CmdFlags::all(),
        }),
        CapabilitySet::Pointer(capability_sets::Pointer {
            color_pointer_cache_size: 25,
            pointer_cache_size: 25,
        }),
        CapabilitySet::Input(capability_sets::Input {
            input_flags: InputFlags::SCANCODES
                | InputFlags::MOUSEX
                | InputFlags::FASTPATH_INPUT
                | InputFlags::FASTPATH_INPUT_2,
            keyboard_layout: 0,
            keyboard_type: None,
            keyboard_subtype: 0,
            keyboard_function_key: 12,
            keyboard_ime_filename: String::new(),
        }),
        CapabilitySet::VirtualChannel(capability_sets::VirtualChannel {
            flags: VirtualChannelFlags::NO_COMPRESSION,
            chunk_size: Some(16256),
        }),
        CapabilitySet::MultiFragmentUpdate(capability_sets::MultifragmentUpdate {
            max_request_size: 8 * 1024 * 1024,
        }),
    ]
}

fn tls_acceptor() -> Result<tokio_rustls::TlsAcceptor> {
    let cert = rcgen::generate_simple_self_signed(vec!["hostile-rdp".into()])?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Drains what the client sends until it hangs up (bounded by the connection lifetime).
async fn drain<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn run(mut tcp: tokio::net::TcpStream, attack: RdpAttack) {
    if attack.before_tls() {
        let mut request = vec![0u8; 4096];
        let _ = tcp.read(&mut request).await;
        let bytes: Vec<u8> = match attack {
            RdpAttack::GarbageConfirm => (0..512u32).map(|i| (i * 151 + 7) as u8).collect(),
            _ => vec![3, 0, 0xff, 0xff, 2, 0xf0],
        };
        let _ = tcp.write_all(&bytes).await;
        drain(&mut tcp).await;
        return;
    }
    if let Err(error) = connect_and_attack(tcp, attack).await {
        let _ = error;
    }
}

/// The server side of the connection sequence (TLS with a throwaway certificate, no NLA) at `size`;
/// returns the stream ready for output PDUs.
pub(crate) async fn accept(
    tcp: tokio::net::TcpStream,
    size: DesktopSize,
) -> Result<TokioFramed<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let mut acceptor = Acceptor::new(SecurityProtocol::SSL, size, capabilities(size), None);
    let framed = TokioFramed::new(tcp);
    let tcp = match ironrdp_acceptor::accept_begin(framed, &mut acceptor)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.report()))?
    {
        BeginResult::ShouldUpgrade(stream) => stream,
        BeginResult::Continue(_) => anyhow::bail!("the client did not ask for TLS"),
    };
    let tls = tls_acceptor()?.accept(tcp).await.context("tls accept")?;
    acceptor.mark_security_upgrade_as_done();
    let (framed, _result) = ironrdp_acceptor::accept_finalize(TokioFramed::new(tls), &mut acceptor)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.report()))?;
    Ok(framed)
}

async fn connect_and_attack(tcp: tokio::net::TcpStream, attack: RdpAttack) -> Result<()> {
    let size = DesktopSize {
        width: 800,
        height: 600,
    };
    let mut framed = accept(tcp, size).await?;
    let mut written = 0usize;
    for pdu in payloads(attack) {
        written += pdu.len();
        if written > MAX_BYTES {
            break;
        }
        if framed.write_all(&pdu).await.is_err() {
            return Ok(());
        }
    }
    let (mut stream, _) = framed.into_inner();
    let _ = stream.flush().await;
    drain(&mut stream).await;
    Ok(())
}

/// A fast-path output frame (no encryption) around `updates`; the length field is honest.
fn fast_path(updates: &[u8]) -> Vec<u8> {
    let len = updates.len() + 3;
    let mut out = vec![0x00, 0x80 | ((len >> 8) as u8 & 0x7f), len as u8];
    out.extend_from_slice(updates);
    out
}

/// One fast-path update: `code`, fragmentation and compression bits, then its data.
fn update(code: u8, fragmentation: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![code | (fragmentation << 4)];
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn le16(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A TS_BITMAP_DATA rectangle.
fn bitmap(dest: [u16; 4], width: u16, height: u16, bpp: u16, flags: u16, data: &[u8]) -> Vec<u8> {
    let mut out = le16(&dest);
    out.extend(le16(&[width, height, bpp, flags, data.len() as u16]));
    out.extend_from_slice(data);
    out
}

fn bitmap_update(count: u16, rects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = le16(&[1, count]);
    for r in rects {
        out.extend_from_slice(r);
    }
    out
}

fn garbage(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

const UPDATE_ORDERS: u8 = 0;
const UPDATE_BITMAP: u8 = 1;
const UPDATE_PALETTE: u8 = 2;
const UPDATE_SURFCMDS: u8 = 4;
const UPDATE_COLOR_POINTER: u8 = 9;

/// The PDUs an attack sends once the session is active.
fn payloads(attack: RdpAttack) -> Vec<Vec<u8>> {
    match attack {
        RdpAttack::GarbageConfirm | RdpAttack::TruncatedTpkt => Vec::new(),
        RdpAttack::FastPathZeroLength => vec![vec![0x00, 0x00], vec![0x00, 0x80, 0x00]],
        RdpAttack::FastPathUpdateOverrun => {
            let mut u = vec![UPDATE_BITMAP];
            u.extend_from_slice(&0xffffu16.to_le_bytes());
            u.extend_from_slice(&[1, 0, 1, 0]);
            vec![fast_path(&u)]
        }
        RdpAttack::BitmapHugeDimensions => vec![fast_path(&update(
            UPDATE_BITMAP,
            0,
            &bitmap_update(
                1,
                &[bitmap(
                    [0, 0, 0xfffe, 0xfffe],
                    0xffff,
                    0xffff,
                    32,
                    0,
                    &[0xaa; 64],
                )],
            ),
        ))],
        RdpAttack::BitmapOutsideDesktop => vec![fast_path(&update(
            UPDATE_BITMAP,
            0,
            &bitmap_update(
                1,
                &[bitmap(
                    [60000, 60000, 60007, 60007],
                    8,
                    8,
                    32,
                    0,
                    &[0x55; 256],
                )],
            ),
        ))],
        RdpAttack::BitmapRectangleCountBomb => vec![fast_path(&update(
            UPDATE_BITMAP,
            0,
            &bitmap_update(0xffff, &[bitmap([0, 0, 3, 3], 4, 4, 32, 0, &[0x11; 64])]),
        ))],
        RdpAttack::InterleavedRleGarbage => vec![fast_path(&update(
            UPDATE_BITMAP,
            0,
            &bitmap_update(
                1,
                &[bitmap(
                    [0, 0, 799, 599],
                    800,
                    600,
                    16,
                    0x0401,
                    &garbage(2000, 1),
                )],
            ),
        ))],
        RdpAttack::PlanarGarbage => vec![fast_path(&update(
            UPDATE_BITMAP,
            0,
            &bitmap_update(
                1,
                &[bitmap(
                    [0, 0, 799, 599],
                    800,
                    600,
                    32,
                    0x0401,
                    &garbage(2000, 2),
                )],
            ),
        ))],
        RdpAttack::BulkCompressionBomb => {
            // Compression bits 2 (compressionFlags present), flags: PACKET_COMPRESSED | RDP 6.1.
            let data = garbage(4000, 3);
            let mut u = vec![UPDATE_BITMAP | (2 << 6), 0x20 | 0x03];
            u.extend_from_slice(&(data.len() as u16).to_le_bytes());
            u.extend_from_slice(&data);
            vec![fast_path(&u)]
        }
        RdpAttack::SurfaceBitsOutOfRange | RdpAttack::SurfaceBitsUnknownCodec => {
            let codec = if attack == RdpAttack::SurfaceBitsOutOfRange {
                0
            } else {
                0x77
            };
            // TS_SURFCMD_SET_SURF_BITS: cmdType, destLeft, destTop, destRight, destBottom, then
            // TS_BITMAP_DATA_EX: bpp, flags, reserved, codecID, width, height, length (u32), data.
            let mut cmd = le16(&[0x0001, 0, 0, 0xffff, 0xffff]);
            cmd.extend_from_slice(&[32, 0, 0, codec]);
            cmd.extend(le16(&[0xffff, 0xffff]));
            cmd.extend_from_slice(&64u32.to_le_bytes());
            cmd.extend_from_slice(&[0x42; 64]);
            vec![fast_path(&update(UPDATE_SURFCMDS, 0, &cmd))]
        }
        RdpAttack::PointerHuge => {
            // TS_COLORPOINTERATTRIBUTE: cacheIndex, hotSpot x/y, width, height, lengthAndMask,
            // lengthXorMask, then masks far shorter than the size implies.
            let mut p = le16(&[0, 0, 0, 0xffff, 0xffff, 16, 16]);
            p.extend_from_slice(&[0xff; 32]);
            vec![fast_path(&update(UPDATE_COLOR_POINTER, 0, &p))]
        }
        RdpAttack::PaletteOverflow => {
            let mut p = le16(&[2, 0]);
            p.extend_from_slice(&0xffffu32.to_le_bytes());
            p.extend_from_slice(&[0x10; 30]);
            vec![fast_path(&update(UPDATE_PALETTE, 0, &p))]
        }
        RdpAttack::OrdersGarbage => {
            let mut o = le16(&[0xffff]);
            o.extend(garbage(3000, 4));
            vec![fast_path(&update(UPDATE_ORDERS, 0, &o))]
        }
        RdpAttack::EndlessFragments => {
            // FIRST, then NEXT forever (up to the byte cap): a client that keeps them all grows.
            let chunk = garbage(16000, 5);
            let mut out = vec![fast_path(&update(UPDATE_BITMAP, 2, &chunk))];
            let next = fast_path(&update(UPDATE_BITMAP, 3, &chunk));
            out.extend(std::iter::repeat_n(next, MAX_BYTES / 16_003));
            out
        }
        RdpAttack::SlowPathGarbage => {
            let body = garbage(1000, 6);
            let len = body.len() + 7;
            let mut out = vec![3, 0, (len >> 8) as u8, len as u8, 2, 0xf0, 0x80];
            out.extend_from_slice(&body);
            vec![out]
        }
    }
}
