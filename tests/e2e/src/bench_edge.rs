//! `sallyport-bench edge` (run by `cargo xtask bench edge`): the eBPF edge measured against the kernel's own
//! tools on one veth link, in one run.
//!
//! - Drop rate: a bounded UDP flood from inside a test namespace to a closed port (9) of the root-side veth
//!   address, dropped either by the edge's XDP program (counter `closed_port`) or by an nftables rule in the
//!   netdev family on the ingress hook of the same device (`udp dport 9 counter drop`). Each mechanism's own
//!   counter, divided by the flood's duration, is its drop rate; the same sender offers the same load to both.
//!   CPU per dropped packet is the sender thread's CPU time (on veth the receive path, filter included, runs as
//!   softirq work in the sender's context on its way out of `sendmmsg`) plus what the ksoftirqd threads used
//!   meanwhile. It includes the sender's own cost, which is the same for both mechanisms.
//! - Bulk TCP: a sink on port 443 of the root-side address, a client in the namespace sending a fixed amount;
//!   throughput with the edge attached (XDP on ingress, TC on egress) against nothing attached.
//!
//! Repetitions alternate between the two setups; the report gives medians. Every flood and transfer is bounded
//! in count and time; traffic stays on the veth link of the namespace this run creates. The nftables table,
//! the edge and the namespace are removed on drop, also on error.

use std::fs::File;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
use nix::time::{ClockId, clock_gettime};
use sallyport_edge::{Edge, EdgeSettings, Reason, Role};

use crate::common::{pid_alive, require_root, require_tool, run_ok};
use crate::netns::TargetNet;

/// The closed port the flood goes to.
const FLOOD_PORT: u16 = 9;
/// Upper bounds of one flood: whichever comes first ends it.
const FLOOD_MAX_PACKETS: u64 = 4_000_000;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(2);
/// Datagrams handed to the kernel per `sendmmsg` call, and the payload of each.
const FLOOD_BATCH: usize = 64;
const FLOOD_PAYLOAD: usize = 18;
const FLOOD_RUNS: usize = 5;
/// Time for the receive side to finish with the last packets before counters are read.
const SETTLE: Duration = Duration::from_millis(200);

const PORTAL_PORT: u16 = 443;
const BULK_BYTES: u64 = 256 * 1024 * 1024;
const BULK_RUNS: usize = 5;
const BULK_TIMEOUT: Duration = Duration::from_secs(60);

/// Prefix of the nftables tables this benchmark creates; the process id follows.
const NFT_TABLE_PREFIX: &str = "spbench_";

/// Runs both measurements and prints the report.
pub fn run() -> Result<()> {
    require_root()?;
    require_tool("/usr/sbin/nft")?;
    remove_stale_tables();
    let net = TargetNet::create("edge")?;
    pin_neighbour(&net)?;
    let target = SocketAddrV4::new(net.host_addr(), FLOOD_PORT);
    println!(
        "sallyport-bench edge: veth {} ({}) <-> namespace {} ({}); the filters sit on {}'s ingress",
        net.host_if(),
        net.host_addr(),
        net.name(),
        net.ns_addr(),
        net.host_if()
    );
    drop_rates(&net, target)?;
    bulk_tcp(&net)?;
    Ok(())
}

/// One flood's figures.
#[derive(Clone, Copy, Debug)]
struct Flood {
    /// Datagrams the kernel accepted from the sender.
    sent: u64,
    /// From the first to the last send call.
    seconds: f64,
    /// CPU time of the sending thread.
    sender_cpu_ns: u64,
}

/// One mechanism's result for one flood.
#[derive(Clone, Copy, Debug)]
struct DropRun {
    offered_pps: f64,
    dropped_pps: f64,
    /// Sent but not counted by the filter (lost earlier on the link, or still counted elsewhere).
    missed: u64,
    cpu_ns_per_drop: f64,
}

impl DropRun {
    fn new(flood: Flood, dropped: u64, softirq_thread_ns: u64) -> DropRun {
        let cpu = (flood.sender_cpu_ns + softirq_thread_ns) as f64;
        DropRun {
            offered_pps: flood.sent as f64 / flood.seconds,
            dropped_pps: dropped as f64 / flood.seconds,
            missed: flood.sent.saturating_sub(dropped),
            cpu_ns_per_drop: if dropped == 0 {
                f64::NAN
            } else {
                cpu / dropped as f64
            },
        }
    }
}

/// Which of the two setups goes first in run `run` (true = the edge's): they alternate, so that drift on a
/// shared machine hits both alike.
fn alternating(run: usize) -> [bool; 2] {
    if run.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

fn drop_rates(net: &TargetNet, target: SocketAddrV4) -> Result<()> {
    let mut xdp = Vec::with_capacity(FLOOD_RUNS);
    let mut nft = Vec::with_capacity(FLOOD_RUNS);
    let mut mode = "";
    for run in 0..FLOOD_RUNS {
        for xdp_turn in alternating(run) {
            if xdp_turn {
                let mut edge = Edge::load(&EdgeSettings::default())
                    .context("loading the eBPF edge (needs root)")?;
                mode = edge
                    .attach(net.host_if(), Role::Public)
                    .with_context(|| format!("attaching the edge to {}", net.host_if()))?
                    .mode
                    .label();
                let before = edge.counters()?.get(Reason::ClosedPort);
                let (flood, softirq_ns) = measured_flood(net, target)?;
                let dropped = edge
                    .counters()?
                    .get(Reason::ClosedPort)
                    .saturating_sub(before);
                let result = DropRun::new(flood, dropped, softirq_ns);
                print_drop_run("XDP", run, &result);
                xdp.push(result);
            } else {
                let table = NftTable::create(net.host_if(), FLOOD_PORT)?;
                let before = table.dropped()?;
                let (flood, softirq_ns) = measured_flood(net, target)?;
                let dropped = table.dropped()?.saturating_sub(before);
                let result = DropRun::new(flood, dropped, softirq_ns);
                print_drop_run("nftables", run, &result);
                nft.push(result);
            }
        }
    }
    let summary = |runs: &[DropRun]| {
        (
            median(runs.iter().map(|r| r.offered_pps)),
            median(runs.iter().map(|r| r.dropped_pps)),
            median(runs.iter().map(|r| r.cpu_ns_per_drop)),
        )
    };
    let (xdp_offered, xdp_rate, xdp_cpu) = summary(&xdp);
    let (nft_offered, nft_rate, nft_cpu) = summary(&nft);
    println!(
        "UDP flood to closed port {FLOOD_PORT}, {FLOOD_PAYLOAD}-byte payloads, each flood <= {FLOOD_MAX_PACKETS} packets and <= {} s, median of {FLOOD_RUNS}:",
        FLOOD_MAX_TIME.as_secs()
    );
    println!(
        "  {:<30} {:>14} {:>14} {:>18}",
        "mechanism", "offered (pps)", "dropped (pps)", "CPU ns per drop"
    );
    println!(
        "  {:<30} {:>14.0} {:>14.0} {:>18.0}",
        format!("XDP program ({mode})"),
        xdp_offered,
        xdp_rate,
        xdp_cpu
    );
    println!(
        "  {:<30} {:>14.0} {:>14.0} {:>18.0}",
        "nftables netdev ingress rule", nft_offered, nft_rate, nft_cpu
    );
    println!(
        "  drop rate XDP / nftables: {:.2}; CPU per drop XDP / nftables: {:.2} (CPU = sender thread incl. the softirq it runs, + ksoftirqd; the sender's own share is in both)",
        xdp_rate / nft_rate,
        xdp_cpu / nft_cpu
    );
    Ok(())
}

fn print_drop_run(label: &str, run: usize, result: &DropRun) {
    println!(
        "  run {} {label:<9} offered {:>10.0} pps, dropped {:>10.0} pps, not counted {:>8}, {:>6.0} CPU ns per drop",
        run + 1,
        result.offered_pps,
        result.dropped_pps,
        result.missed,
        result.cpu_ns_per_drop
    );
}

/// A flood from inside the namespace, with the ksoftirqd CPU time it caused (nanoseconds).
fn measured_flood(net: &TargetNet, target: SocketAddrV4) -> Result<(Flood, u64)> {
    let softirq_before = ksoftirqd_ns()?;
    let flood = in_namespace(net.name(), move || flood(target))?;
    std::thread::sleep(SETTLE);
    let softirq_after = ksoftirqd_ns()?;
    Ok((flood, softirq_after.saturating_sub(softirq_before)))
}

/// Sends UDP datagrams to `target` as fast as `sendmmsg` goes, until the packet or time bound is reached.
fn flood(target: SocketAddrV4) -> Result<Flood> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding the flood socket")?;
    socket
        .connect(target)
        .with_context(|| format!("connecting the flood socket to {target}"))?;
    let payload = [0x5au8; FLOOD_PAYLOAD];
    let slices: Vec<[IoSlice<'_>; 1]> =
        (0..FLOOD_BATCH).map(|_| [IoSlice::new(&payload)]).collect();
    let addresses: Vec<Option<SockaddrIn>> = vec![None; FLOOD_BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(FLOOD_BATCH, None);
    let cpu_before = thread_cpu_ns()?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut refused = 0u64;
    while sent < FLOOD_MAX_PACKETS && started.elapsed() < FLOOD_MAX_TIME {
        let batch = FLOOD_BATCH.min((FLOOD_MAX_PACKETS - sent) as usize);
        match sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices[..batch],
            &addresses[..batch],
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => sent += results.count() as u64,
            // A full queue on the way out: the load is what it is, try again.
            Err(nix::errno::Errno::ENOBUFS | nix::errno::Errno::EAGAIN) => {}
            // An ICMP port unreachable came back: something let a datagram through. Count and go on.
            Err(nix::errno::Errno::ECONNREFUSED) => refused += 1,
            Err(error) => return Err(anyhow!("sendmmsg to {target}: {error}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let sender_cpu_ns = thread_cpu_ns()?.saturating_sub(cpu_before);
    if refused > 0 {
        bail!("{refused} port-unreachable errors came back: the filter let flood packets through");
    }
    if sent == 0 {
        bail!("the flood sent nothing to {target}");
    }
    Ok(Flood {
        sent,
        seconds,
        sender_cpu_ns,
    })
}

fn thread_cpu_ns() -> Result<u64> {
    let now = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).context("reading thread CPU time")?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

/// CPU time used so far by all ksoftirqd threads (nanoseconds, from /proc/PID/schedstat).
fn ksoftirqd_ns() -> Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let is_ksoftirqd = std::fs::read_to_string(path.join("comm"))
            .map(|comm| comm.starts_with("ksoftirqd/"))
            .unwrap_or(false);
        if !is_ksoftirqd {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat"))
            .with_context(|| format!("reading {}/schedstat", path.display()))?;
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .with_context(|| format!("unexpected schedstat {schedstat:?}"))?;
    }
    Ok(total)
}

/// Runs `f` on a new thread that has joined the network namespace `ns`; the thread ends with `f`.
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::Builder::new()
        .name("bench-in-netns".into())
        .spawn(move || {
            let file = File::open(&path).with_context(|| format!("opening {path}"))?;
            setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {path}"))?;
            f()
        })
        .context("starting a thread for the namespace")?
        .join()
        .map_err(|_| anyhow!("the thread inside the namespace panicked"))?
}

/// A permanent neighbour entry for the root-side address inside the namespace, so that no flood waits for
/// ARP (ARP would pass either filter anyway, but its first packets would queue).
fn pin_neighbour(net: &TargetNet) -> Result<()> {
    let mac_path = format!("/sys/class/net/{}/address", net.host_if());
    let mac = std::fs::read_to_string(&mac_path).with_context(|| format!("reading {mac_path}"))?;
    let host = net.host_addr().to_string();
    run_ok(Command::new("ip").args([
        "-n",
        net.name(),
        "neigh",
        "replace",
        &host,
        "lladdr",
        mac.trim(),
        "dev",
        net.ns_if(),
        "nud",
        "permanent",
    ]))?;
    Ok(())
}

/// An nftables table (netdev family) with one ingress chain on a device that drops UDP to one port and counts.
/// Deleted on drop.
struct NftTable {
    name: String,
}

impl NftTable {
    fn create(device: &str, port: u16) -> Result<NftTable> {
        let table = NftTable {
            name: format!("{NFT_TABLE_PREFIX}{}", std::process::id()),
        };
        run_ok(Command::new("nft").args(["add", "table", "netdev", &table.name]))?;
        let device = format!("\"{device}\"");
        run_ok(Command::new("nft").args([
            "add",
            "chain",
            "netdev",
            &table.name,
            "ingress",
            "{",
            "type",
            "filter",
            "hook",
            "ingress",
            "device",
            &device,
            "priority",
            "0;",
            "policy",
            "accept;",
            "}",
        ]))?;
        let port = port.to_string();
        run_ok(Command::new("nft").args([
            "add",
            "rule",
            "netdev",
            &table.name,
            "ingress",
            "udp",
            "dport",
            &port,
            "counter",
            "drop",
        ]))?;
        Ok(table)
    }

    /// Packets the rule's counter has seen.
    fn dropped(&self) -> Result<u64> {
        let listing =
            run_ok(Command::new("nft").args(["list", "chain", "netdev", &self.name, "ingress"]))?;
        listing
            .split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|packets| packets.parse().ok())
            .with_context(|| format!("no rule counter in the nft listing: {listing}"))
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = run_ok(Command::new("nft").args(["delete", "table", "netdev", &self.name]));
    }
}

/// Deletes tables left behind by benchmark processes that no longer exist (killed runs).
fn remove_stale_tables() {
    let Ok(list) = run_ok(Command::new("nft").args(["list", "tables", "netdev"])) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.trim().strip_prefix("table netdev ") else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NFT_TABLE_PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !pid_alive(pid) {
            let _ = run_ok(Command::new("nft").args(["delete", "table", "netdev", name]));
        }
    }
}

fn bulk_tcp(net: &TargetNet) -> Result<()> {
    let addr = SocketAddr::from((net.host_addr(), PORTAL_PORT));
    let mut attached = Vec::with_capacity(BULK_RUNS);
    let mut detached = Vec::with_capacity(BULK_RUNS);
    let mut mode = "";
    for run in 0..BULK_RUNS {
        for attach in alternating(run) {
            let edge = if attach {
                let mut edge = Edge::load(&EdgeSettings::default())
                    .context("loading the eBPF edge (needs root)")?;
                mode = edge
                    .attach(net.host_if(), Role::Public)
                    .with_context(|| format!("attaching the edge to {}", net.host_if()))?
                    .mode
                    .label();
                Some(edge)
            } else {
                None
            };
            let mbps = transfer(net, addr)?;
            if let Some(edge) = &edge {
                let counters = edge.counters()?;
                if counters.dropped() > 0 {
                    bail!(
                        "the edge dropped {} packets of the 443 transfer: {:?}",
                        counters.dropped(),
                        counters.by_reason
                    );
                }
            }
            drop(edge);
            let label = if attach { "attached" } else { "detached" };
            println!("  run {} {label}: {mbps:.0} MB/s", run + 1);
            if attach {
                attached.push(mbps);
            } else {
                detached.push(mbps);
            }
        }
    }
    let attached_mbps = median(attached.into_iter());
    let detached_mbps = median(detached.into_iter());
    println!(
        "bulk TCP to port {PORTAL_PORT}, {} MiB per transfer, median of {BULK_RUNS}: edge attached ({mode} XDP + TC) {attached_mbps:.0} MB/s, detached {detached_mbps:.0} MB/s; ratio {:.2}",
        BULK_BYTES >> 20,
        attached_mbps / detached_mbps
    );
    Ok(())
}

/// One bulk transfer from the namespace to a sink at `addr` in the root namespace; MB/s from connect to the
/// sink's confirmation that every byte arrived.
fn transfer(net: &TargetNet, addr: SocketAddr) -> Result<f64> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the sink to {addr}"))?;
    listener.set_nonblocking(true)?;
    let sink = std::thread::Builder::new()
        .name("bench-tcp-sink".into())
        .spawn(move || sink(&listener))
        .context("starting the sink thread")?;
    let sent = in_namespace(net.name(), move || send_bulk(addr));
    let received = sink
        .join()
        .map_err(|_| anyhow!("the sink thread panicked"))?;
    let seconds = sent?;
    let received = received?;
    if received != BULK_BYTES {
        bail!("the sink received {received} of {BULK_BYTES} bytes");
    }
    Ok(BULK_BYTES as f64 / seconds / 1e6)
}

/// Accepts one connection (bounded wait), reads it to the end and answers with the byte count.
fn sink(listener: &TcpListener) -> Result<u64> {
    let deadline = Instant::now() + BULK_TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("no connection reached the sink within {BULK_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => return Err(error).context("accepting at the sink"),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(BULK_TIMEOUT))?;
    stream.set_write_timeout(Some(BULK_TIMEOUT))?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer).context("reading at the sink")?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if Instant::now() >= deadline {
            bail!("the transfer took longer than {BULK_TIMEOUT:?}");
        }
    }
    stream
        .write_all(&total.to_be_bytes())
        .context("answering from the sink")?;
    Ok(total)
}

/// Connects, sends [`BULK_BYTES`], and waits for the sink's count; returns the seconds it took.
fn send_bulk(addr: SocketAddr) -> Result<f64> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to the sink at {addr}"))?;
    stream.set_read_timeout(Some(BULK_TIMEOUT))?;
    stream.set_write_timeout(Some(BULK_TIMEOUT))?;
    let chunk = vec![0x61u8; 256 * 1024];
    let mut left = BULK_BYTES;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream
            .write_all(&chunk[..n])
            .context("sending to the sink")?;
        left -= n as u64;
        if started.elapsed() >= BULK_TIMEOUT {
            bail!("the transfer took longer than {BULK_TIMEOUT:?}");
        }
    }
    stream.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    stream
        .read_exact(&mut count)
        .context("reading the sink's count")?;
    let seconds = started.elapsed().as_secs_f64();
    if u64::from_be_bytes(count) != BULK_BYTES {
        bail!(
            "the sink counted {} of {BULK_BYTES} bytes",
            u64::from_be_bytes(count)
        );
    }
    Ok(seconds)
}

/// The median (upper middle for an even count); NaN for no values.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
