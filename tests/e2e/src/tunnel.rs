//! TCP between the root network namespace and a loopback-only namespace, for the browser.
//!
//! Chromium aborts requests with `ERR_NETWORK_CHANGED` whenever an interface or address appears
//! in its namespace, which happens all the time while tests create veths in parallel. So the
//! browser lives in its own namespace (only `lo`, which never changes) and reaches the root
//! namespace through:
//! - [`NsSockets`]: a thread that has entered the namespace with `setns` and creates sockets
//!   there (a socket stays in the namespace it was created in, whatever thread uses it later);
//! - [`spawn_connect_proxy`]: an HTTP `CONNECT` proxy listening inside the namespace that opens
//!   tunnels to loopback ports of the root namespace, and to nothing else;
//! - [`spawn_forward`]: a root-namespace loopback port forwarded to a port inside the namespace
//!   (how the WebDriver client reaches chromedriver).
//!
//! Every thread here is bounded: accept loops poll a stop flag, and handshakes have timeouts.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

enum Request {
    Listen(SocketAddr, mpsc::Sender<io::Result<TcpListener>>),
    Connect(SocketAddr, mpsc::Sender<io::Result<TcpStream>>),
}

/// Makes sockets inside a named network namespace (from `/run/netns/<name>`).
#[derive(Debug)]
pub struct NsSockets {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl NsSockets {
    /// Starts the thread and moves it into the namespace.
    pub fn enter(netns: &str) -> Result<NsSockets> {
        let path = format!("/run/netns/{netns}");
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("ns-{netns}"))
            .spawn(move || {
                if let Err(e) = setns(&file, CloneFlags::CLONE_NEWNET) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                for req in rx {
                    match req {
                        Request::Listen(addr, reply) => {
                            let _ = reply.send(TcpListener::bind(addr));
                        }
                        Request::Connect(addr, reply) => {
                            let _ = reply
                                .send(TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
                        }
                    }
                }
            })?;
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("namespace thread did not start")?
            .with_context(|| format!("setns into {netns}"))?;
        Ok(NsSockets {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<io::Result<T>>) -> Request) -> Result<T> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .context("namespace thread stopped")?
            .send(make(reply_tx))
            .map_err(|_| anyhow!("namespace thread is gone"))?;
        Ok(reply_rx
            .recv_timeout(Duration::from_secs(10))
            .context("namespace thread did not answer")??)
    }

    /// A listener bound to `addr` inside the namespace.
    pub fn listen(&self, addr: SocketAddr) -> Result<TcpListener> {
        self.ask(|reply| Request::Listen(addr, reply))
            .with_context(|| format!("listen on {addr} in the namespace"))
    }

    /// A connection to `addr` made from inside the namespace (5 s connect timeout).
    pub fn connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        self.ask(|reply| Request::Connect(addr, reply))
            .with_context(|| format!("connect to {addr} in the namespace"))
    }
}

impl Drop for NsSockets {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running accept loop; [`Acceptor::stop`] (or drop) ends it within about 20 ms.
#[derive(Debug)]
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl Acceptor {
    /// The port the loop accepts on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Ends the accept loop (open tunnels run until their peers close).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_accept_loop(
    listener: TcpListener,
    handle: impl Fn(TcpStream) + Send + 'static,
) -> Result<Acceptor> {
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(false).is_ok() {
                        handle(stream);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Ok(Acceptor {
        stop,
        thread: Some(thread),
        port,
    })
}

/// Copies both directions between `a` and `b` on two threads until each side has closed.
pub fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy_then_close(a, b2));
    std::thread::spawn(move || copy_then_close(b, a2));
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Forwards connections to `127.0.0.1:<returned port>` in the root namespace to
/// `127.0.0.1:target_port` inside the namespace of `ns`.
pub fn spawn_forward(ns: Arc<NsSockets>, target_port: u16) -> Result<Acceptor> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    spawn_accept_loop(listener, move |client| {
        let ns = ns.clone();
        std::thread::spawn(move || {
            if let Ok(upstream) = ns.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, target_port))) {
                pipe(client, upstream);
            }
        });
    })
}

/// Forwards connections to `127.0.0.1:<returned port>` in the root namespace to `target`, dialled from
/// inside the namespace of `ns` (a client elsewhere on a test network).
pub fn spawn_forward_to(ns: Arc<NsSockets>, target: SocketAddr) -> Result<Acceptor> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    spawn_accept_loop(listener, move |client| {
        let ns = ns.clone();
        std::thread::spawn(move || {
            if let Ok(upstream) = ns.connect(target) {
                pipe(client, upstream);
            }
        });
    })
}

/// An HTTP proxy listening on `127.0.0.1:port` inside the namespace of `ns`, to loopback ports of the
/// root namespace only: `CONNECT` tunnels (HTTPS), and plain `http://127.0.0.1:PORT/…` requests (a
/// program's loopback callback, RFC 8252), passed on in origin form; anything else is answered with 403.
pub fn spawn_connect_proxy(ns: &NsSockets, port: u16) -> Result<Acceptor> {
    let listener = ns.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    spawn_accept_loop(listener, |client| {
        std::thread::spawn(move || {
            let _ = serve_connect(client);
        });
    })
}

/// A plain-HTTP request in absolute form (`GET http://127.0.0.1:PORT/path HTTP/1.1`) to a loopback
/// port: sent there in origin form (`GET /path HTTP/1.1`) with the rest of its head, then piped.
fn forward_plain(mut client: TcpStream, head: &str, rest: &[u8]) -> Result<()> {
    let (request_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let mut words = request_line.split_whitespace();
    let (method, target, version) = (
        words.next().unwrap_or(""),
        words.next().unwrap_or(""),
        words.next().unwrap_or("HTTP/1.1"),
    );
    let destination = target
        .strip_prefix("http://")
        .and_then(|rest| {
            rest.split_once('/')
                .map(|(authority, path)| (authority, format!("/{path}")))
        })
        .and_then(|(authority, path)| {
            let (host, port) = authority.rsplit_once(':')?;
            matches!(host, "127.0.0.1" | "localhost")
                .then_some(())
                .and_then(|()| port.parse::<u16>().ok())
                .map(|port| (port, path))
        });
    let Some((port, path)) = destination else {
        client.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    let Ok(mut upstream) = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    ) else {
        client.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    upstream.write_all(format!("{method} {path} {version}\r\n{headers}").as_bytes())?;
    upstream.write_all(rest)?;
    client.set_read_timeout(None)?;
    pipe(client, upstream);
    Ok(())
}

fn serve_connect(mut client: TcpStream) -> Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Ok(());
        }
        let mut chunk = [0u8; 2048];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "CONNECT" {
        return forward_plain(client, &head, &buf[head_end..]);
    }
    let port = target
        .rsplit_once(':')
        .filter(|(host, _)| matches!(*host, "127.0.0.1" | "localhost" | "[::1]"))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let (true, Some(port)) = (method == "CONNECT", port) else {
        client.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    let upstream = match TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    ) {
        Ok(upstream) => upstream,
        Err(_) => {
            client.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    };
    client.set_read_timeout(None)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let mut upstream_w = upstream.try_clone()?;
    upstream_w.write_all(&buf[head_end..])?;
    pipe(client, upstream);
    Ok(())
}
