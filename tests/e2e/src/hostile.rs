//! Hostile SSH targets: servers of ours that break SSH on purpose, to show that each breakage ends only its own
//! session, with a clear error, in bounded time and memory.
//!
//! Two kinds:
//! - [`HostileSshd`]: a small TCP server inside a [`TargetNet`] speaking broken SSH before any key is exchanged
//!   (endless or huge banners, silence, absurd packet lengths, garbage, KEXINIT bombs, truncated packets, closes
//!   and resets in the middle of the handshake, a slow drip, a flood of `SSH_MSG_IGNORE`). Its listening socket
//!   is created inside the namespace through [`NsSockets`]; every connection is served by bounded threads and
//!   reported in a [`ConnectionReport`] (what the gateway sent, when it hung up).
//! - [`HostileShell`]: a real OpenSSH server ([`Sshd`]) whose `ForceCommand` misbehaves once the session is
//!   open: an endless output flood, terminal escape bombs, or a shell that never reads its input (so the SSH
//!   window towards the target closes and stays closed).
//!
//! Breaking SSH *after* the key exchange needs session keys, which only a real SSH implementation has, and this
//! crate depends on none besides the gateway's own. Those cases (channels opened towards the gateway, a window
//! that never opens, a disconnect in the middle of the session, a keyboard-interactive question bomb) are tested
//! against russh's server in `gateway/ssh/src/hostile_tests.rs`. A target that sends more than the window
//! allows is not built anywhere: russh's server always respects windows, and russh's client hands such extra
//! data to the same bounded channel queue as any other (see `sallyport_ssh::session`), so it cannot grow memory.
//!
//! Bounds: every connection thread ends when the gateway hangs up, when the server is dropped, or after
//! [`CONNECTION_LIFETIME`]; every write loop is limited in bytes as well; forced commands run under
//! `timeout(1)`. Traffic stays inside the test's namespace.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::netns::TargetNet;
use crate::sshd::{Sshd, SshdOptions};
use crate::tunnel::NsSockets;

/// The longest a hostile connection is served, whatever happens.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(90);
/// The most bytes a hostile server writes on one connection.
pub const MAX_BYTES_PER_CONNECTION: u64 = 64 * 1024 * 1024;
/// The identification line hostile servers send when their mode needs a valid one.
pub const SERVER_BANNER: &[u8] = b"SSH-2.0-OpenSSH_9.6 hostile\r\n";

/// How long a [`HostileShell`]'s forced command may run (seconds), so nothing outlives a test by much.
const FORCED_COMMAND_SECS: u32 = 180;
/// Interval at which threads look at their stop flag and deadline.
const TICK: Duration = Duration::from_millis(50);

/// How a [`HostileSshd`] breaks SSH. All of them act before any key is exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostileMode {
    /// Pre-banner text lines (RFC 4253 allows some) as fast as the gateway reads, without end.
    EndlessBannerFast,
    /// One pre-banner line every 1.5 s, without end: never an identification line, never fast enough to trip
    /// a line count quickly.
    EndlessBannerSlow,
    /// `SSH-2.0-` followed by 16 MiB without a newline.
    HugeBannerLine,
    /// Accepts the connection and says nothing.
    NoBanner,
    /// A valid identification line, then a packet whose length field is `0xFFFFFFF0`.
    AbsurdPacketLength,
    /// A valid identification line, then up to 16 MiB of pseudo-random bytes.
    KexGarbage,
    /// A valid identification line, then a well-formed KEXINIT of about 160 KiB: ten name-lists just under
    /// russh's limits (16 KiB and 1024 names each) full of made-up algorithm names.
    KexInitBomb,
    /// A valid identification line, then a KEXINIT whose first name-list claims to be 4 GiB long.
    KexInitLyingLength,
    /// A valid identification line, a packet header announcing 1 KiB, 16 bytes of it, then FIN.
    TruncatedPacket,
    /// A valid identification line and KEXINIT, then FIN while the gateway waits for the key exchange reply.
    CloseMidHandshake,
    /// As [`HostileMode::CloseMidHandshake`], but the connection is reset (RST).
    ResetMidHandshake,
    /// A valid identification line, then a 1 KiB packet sent one byte every 500 ms.
    SlowDripPacket,
    /// A valid identification line and KEXINIT, then 32 KiB `SSH_MSG_IGNORE` packets without end instead of
    /// the key exchange reply.
    IgnoreFlood,
}

impl HostileMode {
    /// Every mode.
    pub const ALL: &'static [HostileMode] = &[
        HostileMode::EndlessBannerFast,
        HostileMode::EndlessBannerSlow,
        HostileMode::HugeBannerLine,
        HostileMode::NoBanner,
        HostileMode::AbsurdPacketLength,
        HostileMode::KexGarbage,
        HostileMode::KexInitBomb,
        HostileMode::KexInitLyingLength,
        HostileMode::TruncatedPacket,
        HostileMode::CloseMidHandshake,
        HostileMode::ResetMidHandshake,
        HostileMode::SlowDripPacket,
        HostileMode::IgnoreFlood,
    ];

    /// A short name, usable as a target name.
    pub fn name(self) -> &'static str {
        match self {
            HostileMode::EndlessBannerFast => "endless-banner-fast",
            HostileMode::EndlessBannerSlow => "endless-banner-slow",
            HostileMode::HugeBannerLine => "huge-banner-line",
            HostileMode::NoBanner => "no-banner",
            HostileMode::AbsurdPacketLength => "absurd-packet-length",
            HostileMode::KexGarbage => "kex-garbage",
            HostileMode::KexInitBomb => "kexinit-bomb",
            HostileMode::KexInitLyingLength => "kexinit-lying-length",
            HostileMode::TruncatedPacket => "truncated-packet",
            HostileMode::CloseMidHandshake => "close-mid-handshake",
            HostileMode::ResetMidHandshake => "reset-mid-handshake",
            HostileMode::SlowDripPacket => "slow-drip-packet",
            HostileMode::IgnoreFlood => "ignore-flood",
        }
    }

    /// Whether the server itself ends the connection (so "the gateway hung up" is not expected of the peer).
    pub fn server_closes(self) -> bool {
        matches!(
            self,
            HostileMode::TruncatedPacket
                | HostileMode::CloseMidHandshake
                | HostileMode::ResetMidHandshake
        )
    }
}

/// What happened on one connection to a [`HostileSshd`].
#[derive(Debug, Clone, Default)]
pub struct ConnectionReport {
    /// The first line the gateway sent (its identification string), without line end.
    pub client_banner: Option<String>,
    /// Bytes received from the gateway.
    pub bytes_received: u64,
    /// Bytes the hostile server managed to write.
    pub bytes_sent: u64,
    /// Time from accept until the gateway closed or reset the connection, if it did.
    pub peer_closed_after: Option<Duration>,
    /// The server ended the connection itself (the modes that close or reset).
    pub server_closed: bool,
    /// How long the connection was served.
    pub served_for: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    reports: Vec<ConnectionReport>,
    active: usize,
}

/// A hostile SSH server listening inside a [`TargetNet`]; stopped (all threads joined) on drop.
#[derive(Debug)]
pub struct HostileSshd {
    mode: HostileMode,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

impl HostileSshd {
    /// Listens on `net.ns_addr():port` inside the namespace and serves every connection in `mode`.
    pub fn start(net: &TargetNet, port: u16, mode: HostileMode) -> Result<HostileSshd> {
        let addr = SocketAddr::from((net.ns_addr(), port));
        let listener = {
            let ns = NsSockets::enter(net.name())?;
            ns.listen(addr)?
        };
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread = {
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("hostile-{}", mode.name()))
                .spawn(move || accept_loop(listener, mode, stop, shared))?
        };
        Ok(HostileSshd {
            mode,
            addr,
            stop,
            shared,
            thread: Some(thread),
        })
    }

    /// The mode this server runs.
    pub fn mode(&self) -> HostileMode {
        self.mode
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reports of the connections that have ended so far.
    pub fn reports(&self) -> Vec<ConnectionReport> {
        lock(&self.shared).reports.clone()
    }

    /// Waits (at most `timeout`) until at least `count` connections were served and none is still open, and
    /// returns their reports.
    pub fn wait_finished(&self, count: usize, timeout: Duration) -> Result<Vec<ConnectionReport>> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let shared = lock(&self.shared);
                if shared.reports.len() >= count && shared.active == 0 {
                    return Ok(shared.reports.clone());
                }
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "{}: {} of {count} connections finished, {} still open after {timeout:?}",
                        self.mode.name(),
                        shared.reports.len(),
                        shared.active
                    );
                }
            }
            std::thread::sleep(TICK);
        }
    }
}

impl Drop for HostileSshd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(
    listener: TcpListener,
    mode: HostileMode,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    // Bounded in count as well: a test opens a handful of sessions per mode.
    let mut accepted = 0;
    while !stop.load(Ordering::SeqCst) && accepted < 100 {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted += 1;
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                lock(&shared).active += 1;
                let (conn_stop, conn_shared) = (stop.clone(), shared.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("hostile-conn-{}", mode.name()))
                    .spawn(move || {
                        let report = serve(stream, mode, &conn_stop);
                        let mut shared = lock(&conn_shared);
                        shared.active -= 1;
                        shared.reports.push(report);
                    });
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(_) => lock(&shared).active -= 1,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(_) => std::thread::sleep(TICK),
        }
    }
    for handle in connections {
        let _ = handle.join();
    }
}

/// One connection's state: the socket, the limits, and what the reader thread saw.
struct Conn {
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    peer_closed: Arc<Mutex<Option<Duration>>>,
    sent: u64,
}

impl Conn {
    fn alive(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
            && Instant::now() < self.deadline
            && lock_opt(&self.peer_closed).is_none()
            && self.sent < MAX_BYTES_PER_CONNECTION
    }

    /// Writes all of `data` unless the connection ends first; returns whether everything was written.
    fn send(&mut self, data: &[u8]) -> bool {
        let mut offset = 0;
        while offset < data.len() {
            if !self.alive() {
                return false;
            }
            match self.stream.write(&data[offset..]) {
                Ok(0) => return false,
                Ok(n) => {
                    offset += n;
                    self.sent += n as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Sleeps for `duration` unless the connection ends first; returns whether it is still alive.
    fn pause(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            if !self.alive() {
                return false;
            }
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        self.alive()
    }

    /// Waits until the connection ends.
    fn idle(&self) {
        while self.pause(Duration::from_millis(200)) {}
    }
}

fn lock_opt(slot: &Mutex<Option<Duration>>) -> std::sync::MutexGuard<'_, Option<Duration>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the reader thread learned: the gateway's identification line and how much it sent.
#[derive(Default)]
struct Heard {
    first_line: Vec<u8>,
    line_done: bool,
    bytes: u64,
}

fn serve(stream: TcpStream, mode: HostileMode, stop: &Arc<AtomicBool>) -> ConnectionReport {
    let started = Instant::now();
    let mut report = ConnectionReport::default();
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.set_nodelay(true);
    let peer_closed = Arc::new(Mutex::new(None));
    let heard = Arc::new(Mutex::new(Heard::default()));
    let mut conn = Conn {
        stream,
        stop: stop.clone(),
        deadline: started + CONNECTION_LIFETIME,
        peer_closed: peer_closed.clone(),
        sent: 0,
    };
    // The reset mode must keep the gateway's bytes unread, so that closing the socket sends RST.
    let reader = if mode == HostileMode::ResetMidHandshake {
        None
    } else {
        conn.stream.try_clone().ok().map(|stream| {
            let (stop, heard, peer_closed) = (stop.clone(), heard.clone(), peer_closed.clone());
            let deadline = conn.deadline;
            std::thread::spawn(move || {
                read_until_closed(stream, &stop, deadline, started, &heard, &peer_closed)
            })
        })
    };

    run_mode(&mut conn, mode, &heard);
    if mode.server_closes() {
        report.server_closed = true;
        if mode == HostileMode::ResetMidHandshake {
            // SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            let linger = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let _ = nix::sys::socket::setsockopt(
                &conn.stream,
                nix::sys::socket::sockopt::Linger,
                &linger,
            );
        } else {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    } else {
        conn.idle();
    }
    report.bytes_sent = conn.sent;
    drop(conn);
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let heard = heard.lock().unwrap_or_else(|e| e.into_inner());
    report.client_banner = heard.line_done.then(|| {
        String::from_utf8_lossy(&heard.first_line)
            .trim_end()
            .to_owned()
    });
    report.bytes_received = heard.bytes;
    report.peer_closed_after = *lock_opt(&peer_closed);
    report.served_for = started.elapsed();
    report
}

fn read_until_closed(
    mut stream: TcpStream,
    stop: &AtomicBool,
    deadline: Instant,
    started: Instant,
    heard: &Mutex<Heard>,
    peer_closed: &Mutex<Option<Duration>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut heard = heard.lock().unwrap_or_else(|e| e.into_inner());
                heard.bytes += n as u64;
                if !heard.line_done {
                    for &byte in &buf[..n] {
                        if byte == b'\n' || heard.first_line.len() >= 512 {
                            heard.line_done = true;
                            break;
                        }
                        heard.first_line.push(byte);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    if !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        *lock_opt(peer_closed) = Some(started.elapsed());
    }
}

fn run_mode(conn: &mut Conn, mode: HostileMode, heard: &Mutex<Heard>) {
    match mode {
        HostileMode::EndlessBannerFast => {
            let mut n = 0u64;
            loop {
                let mut batch = String::new();
                for _ in 0..64 {
                    batch.push_str(&format!("hostile pre-banner line {n}\r\n"));
                    n += 1;
                }
                if !conn.send(batch.as_bytes()) {
                    return;
                }
            }
        }
        HostileMode::EndlessBannerSlow => {
            let mut n = 0u64;
            while conn.send(format!("hostile slow pre-banner line {n}\r\n").as_bytes())
                && conn.pause(Duration::from_millis(1500))
            {
                n += 1;
            }
        }
        HostileMode::HugeBannerLine => {
            if !conn.send(b"SSH-2.0-") {
                return;
            }
            let chunk = vec![b'A'; 64 * 1024];
            for _ in 0..256 {
                if !conn.send(&chunk) {
                    return;
                }
            }
        }
        HostileMode::NoBanner => {}
        HostileMode::AbsurdPacketLength => {
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
            bytes.extend_from_slice(&[0x14; 60]);
            conn.send(&bytes);
        }
        HostileMode::KexGarbage => {
            if !conn.send(SERVER_BANNER) {
                return;
            }
            let mut rng = XorShift(0x5a11_9027_dead_beef);
            let mut chunk = vec![0u8; 64 * 1024];
            for _ in 0..256 {
                rng.fill(&mut chunk);
                if !conn.send(&chunk) {
                    return;
                }
            }
        }
        HostileMode::KexInitBomb => {
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&clear_packet(&kexinit_bomb()));
            conn.send(&bytes);
        }
        HostileMode::KexInitLyingLength => {
            let mut payload = vec![20u8];
            payload.extend_from_slice(&[7u8; 16]);
            payload.extend_from_slice(&u32::MAX.to_be_bytes());
            payload.extend_from_slice(b"curve25519-sha256");
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&clear_packet(&payload));
            conn.send(&bytes);
        }
        HostileMode::TruncatedPacket => {
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&1024u32.to_be_bytes());
            bytes.extend_from_slice(&[4u8; 16]);
            if conn.send(&bytes) {
                conn.pause(Duration::from_millis(300));
            }
        }
        HostileMode::CloseMidHandshake | HostileMode::ResetMidHandshake => {
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&clear_packet(&valid_kexinit()));
            if conn.send(&bytes) {
                // Long enough for the gateway's KEXINIT and key exchange init to arrive (the reset mode has no
                // reader, so it only waits).
                if mode == HostileMode::CloseMidHandshake {
                    wait_for_bytes(conn, heard, 100, Duration::from_secs(5));
                }
                conn.pause(Duration::from_millis(300));
            }
        }
        HostileMode::SlowDripPacket => {
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&1020u32.to_be_bytes());
            if !conn.send(&bytes) {
                return;
            }
            for _ in 0..1020 {
                if !conn.send(&[10]) || !conn.pause(Duration::from_millis(500)) {
                    return;
                }
            }
        }
        HostileMode::IgnoreFlood => {
            let mut bytes = SERVER_BANNER.to_vec();
            bytes.extend_from_slice(&clear_packet(&valid_kexinit()));
            if !conn.send(&bytes) {
                return;
            }
            let mut ignore = vec![2u8];
            ignore.extend_from_slice(&(32 * 1024u32).to_be_bytes());
            ignore.extend_from_slice(&[b'i'; 32 * 1024]);
            let packet = clear_packet(&ignore);
            while conn.send(&packet) {}
        }
    }
}

/// Waits until the reader has seen at least `bytes` from the gateway, or `timeout` passes.
fn wait_for_bytes(conn: &Conn, heard: &Mutex<Heard>, bytes: u64, timeout: Duration) {
    let until = Instant::now() + timeout;
    while Instant::now() < until && conn.alive() {
        if heard.lock().unwrap_or_else(|e| e.into_inner()).bytes >= bytes {
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// An unencrypted SSH binary packet (RFC 4253 section 6) around `payload`: block size 8, at least 4 bytes of
/// padding, no MAC.
pub fn clear_packet(payload: &[u8]) -> Vec<u8> {
    let mut padding = 8 - (4 + 1 + payload.len()) % 8;
    if padding < 4 {
        padding += 8;
    }
    let length = (1 + payload.len() + padding) as u32;
    let mut packet = Vec::with_capacity(4 + length as usize);
    packet.extend_from_slice(&length.to_be_bytes());
    packet.push(padding as u8);
    packet.extend_from_slice(payload);
    packet.extend(std::iter::repeat_n(0u8, padding));
    packet
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn kexinit(lists: &[Vec<u8>; 10]) -> Vec<u8> {
    let mut payload = vec![20u8];
    payload.extend_from_slice(&[0x42; 16]);
    for list in lists {
        push_string(&mut payload, list);
    }
    payload.push(0);
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload
}

/// A KEXINIT the gateway accepts: it answers with its key exchange init and waits for the reply.
fn valid_kexinit() -> Vec<u8> {
    kexinit(&[
        b"curve25519-sha256".to_vec(),
        b"ssh-ed25519".to_vec(),
        b"chacha20-poly1305@openssh.com".to_vec(),
        b"chacha20-poly1305@openssh.com".to_vec(),
        b"hmac-sha2-256".to_vec(),
        b"hmac-sha2-256".to_vec(),
        b"none".to_vec(),
        b"none".to_vec(),
        Vec::new(),
        Vec::new(),
    ])
}

/// A KEXINIT of about 160 KiB: ten name-lists of made-up names, each just under russh's limits of 16 KiB and
/// 1024 names per list (over them it is refused as malformed, which [`HostileMode::KexInitLyingLength`] covers).
fn kexinit_bomb() -> Vec<u8> {
    let list = |tag: &str| {
        let mut names = Vec::new();
        let mut n = 0;
        while names.len() < 16 * 1024 - 64 && n < 1000 {
            if n > 0 {
                names.push(b',');
            }
            names.extend_from_slice(format!("{tag}-{n:07}@hostile.invalid").as_bytes());
            n += 1;
        }
        names
    };
    kexinit(&[
        list("kex"),
        list("hostkey"),
        list("enc-cs"),
        list("enc-sc"),
        list("mac-cs"),
        list("mac-sc"),
        list("comp-cs"),
        list("comp-sc"),
        list("lang-cs"),
        list("lang-sc"),
    ])
}

/// A small deterministic generator for garbage bytes (no need for real randomness).
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// How a [`HostileShell`] misbehaves once the session is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShellMode {
    /// `yes` without end: as much output as the gateway takes.
    OutputFlood,
    /// Terminal escape bombs, round after round of [`escape_bomb`] (up to 1000 rounds, about 12 GiB).
    EscapeBomb,
    /// A forced command that never reads its input (`sleep`): pasted text fills the PTY, then OpenSSH's
    /// channel window, and the target accepts no more input.
    InputStall,
}

impl ShellMode {
    /// Every mode.
    pub const ALL: &'static [ShellMode] = &[
        ShellMode::OutputFlood,
        ShellMode::EscapeBomb,
        ShellMode::InputStall,
    ];

    /// A short name, usable as a target name.
    pub fn name(self) -> &'static str {
        match self {
            ShellMode::OutputFlood => "output-flood",
            ShellMode::EscapeBomb => "escape-bomb",
            ShellMode::InputStall => "input-stall",
        }
    }

    /// A word the forced command's process line contains, to find it among the namespace's processes.
    pub fn process_marker(self) -> &'static str {
        match self {
            ShellMode::OutputFlood => "sallyport-hostile-flood",
            ShellMode::EscapeBomb => "sallyport-hostile-escapes",
            ShellMode::InputStall => "sallyport-hostile-stall",
        }
    }

    /// The forced command; `bomb` is the escape bomb file (used by [`ShellMode::EscapeBomb`]).
    fn script(self, bomb: &Path) -> String {
        let secs = FORCED_COMMAND_SECS;
        let marker = self.process_marker();
        match self {
            ShellMode::OutputFlood => format!("#!/bin/sh\nexec timeout {secs} yes {marker}\n"),
            ShellMode::EscapeBomb => format!(
                "#!/bin/sh\nexec timeout {secs} sh -c 'i=0; while [ $i -lt 1000 ]; do cat \"$1\"; \
                 printf \"sallyport-escape-round-%d\\r\\n\" $i; i=$((i+1)); done' {marker} {}\n",
                bomb.display()
            ),
            ShellMode::InputStall => {
                format!("#!/bin/sh\nexec timeout {secs} sh -c 'sleep {secs}' {marker}\n")
            }
        }
    }
}

/// One round of the escape bomb, about 12 MiB: huge cursor moves and repeat counts, the alternate screen, OSC 52
/// clipboard writes of 48 KiB, 10 MiB of bare `ESC [`, a CSI with a megabyte of parameter digits, and a
/// megabyte-long OSC title that is terminated only at the end.
pub fn escape_bomb() -> Vec<u8> {
    let mut out = Vec::with_capacity(13 * 1024 * 1024);
    for _ in 0..1000 {
        out.extend_from_slice(b"\x1b[99999999;99999999H\x1b[99999999@\x1b[99999999b\x1b[?1049h");
    }
    for _ in 0..16 {
        out.extend_from_slice(b"\x1b]52;c;");
        out.extend(std::iter::repeat_n(b'A', 48 * 1024));
        out.push(0x07);
    }
    for _ in 0..5 * 1024 * 1024 {
        out.extend_from_slice(b"\x1b[");
    }
    out.extend_from_slice(b"\x1b[");
    out.extend(std::iter::repeat_n(b'9', 1024 * 1024));
    out.push(b'm');
    out.extend_from_slice(b"\x1b]0;");
    out.extend(std::iter::repeat_n(b'T', 1024 * 1024));
    out.extend_from_slice(b"\x1b\\\x1b[0m\x1b[?1049l\r\n");
    out
}

/// A real sshd whose forced command misbehaves ([`ShellMode`]); the user logs in normally.
#[derive(Debug)]
pub struct HostileShell {
    mode: ShellMode,
    sshd: Sshd,
    // Declared after `sshd` so that the script outlives the server that runs it.
    _dir: TempDir,
}

impl HostileShell {
    /// Writes the forced command and starts sshd on `port` inside `net`.
    pub fn start(net: &TargetNet, port: u16, mode: ShellMode) -> Result<HostileShell> {
        let dir = tempfile::Builder::new()
            .prefix("spe2e-hostile-")
            .tempdir()
            .context("hostile shell tempdir")?;
        // The forced command runs as the test user: the directory and script must be readable by it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let bomb = dir.path().join("escape-bomb.bin");
        if mode == ShellMode::EscapeBomb {
            fs::write(&bomb, escape_bomb()).context("write the escape bomb")?;
            fs::set_permissions(&bomb, fs::Permissions::from_mode(0o644))?;
        }
        let script: PathBuf = dir.path().join(format!("{}.sh", mode.name()));
        fs::write(&script, mode.script(&bomb)).context("write the forced command")?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        let sshd = Sshd::start(
            net,
            SshdOptions {
                port,
                extra_config: vec![format!("ForceCommand {}", script.display())],
            },
        )?;
        Ok(HostileShell {
            mode,
            sshd,
            _dir: dir,
        })
    }

    /// The mode.
    pub fn mode(&self) -> ShellMode {
        self.mode
    }

    /// The sshd behind it.
    pub fn sshd(&self) -> &Sshd {
        &self.sshd
    }

    /// PIDs of processes of this mode's forced command still running inside `net`.
    pub fn command_pids(&self, net: &TargetNet) -> Vec<u32> {
        let marker = self.mode.process_marker();
        net.pids()
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|cmdline| {
                        cmdline
                            .split(|&b| b == 0)
                            .any(|arg| arg.windows(marker.len()).any(|w| w == marker.as_bytes()))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}

/// The resident set size of a process in bytes, from `/proc/<pid>/status` (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no VmRSS line in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_packets_are_block_aligned_with_enough_padding() {
        for len in 0..40 {
            let packet = clear_packet(&vec![1u8; len]);
            assert_eq!(packet.len() % 8, 0, "payload {len}");
            let length = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]) as usize;
            assert_eq!(length + 4, packet.len());
            let padding = packet[4] as usize;
            assert!(padding >= 4, "payload {len}: padding {padding}");
            assert_eq!(1 + len + padding, length);
        }
    }

    #[test]
    fn the_kexinit_bomb_stays_under_the_limits_but_is_large() {
        let packet = clear_packet(&kexinit_bomb());
        assert!(packet.len() > 150 * 1024, "{}", packet.len());
        assert!(packet.len() < 256 * 1024, "{}", packet.len());
        // Ten lists, each under 16 KiB.
        let mut rest = &packet[5 + 17..];
        for _ in 0..10 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            assert!(len < 16 * 1024 && len > 15 * 1024, "{len}");
            let names = rest[4..4 + len].split(|&b| b == b',').count();
            assert!(names < 1024, "{names}");
            rest = &rest[4 + len..];
        }
    }
}
