//! The XDP edge live, in network namespaces: the real gateway attaches it to the veth its clients come
//! from (public) and to the veth its target lives behind (internal). From the client namespace, nmap
//! finds the portal port open and every other TCP port filtered, pings go unanswered, UDP reaches the
//! portal port only (its QUIC endpoint answers); an SSH session from the client side still works (the target's replies pass as
//! flows the gateway opened). A login lockout puts the client into the XDP blocklist: its TCP connects
//! time out until the lockout ends, then work again. Stopping the gateway detaches the edge.
//!
//! Controls run before the gateway starts, so each assertion is shown able to fail: without the edge
//! the same scan finds closed ports, pings are answered and UDP to any listening port is echoed.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sallyport_e2e::common::{quic_answered, require_tool, run_with_timeout};
use sallyport_e2e::portal::{Terminal, login_admin, target_id};
use sallyport_e2e::tunnel::NsSockets;
use sallyport_e2e::{
    Client, Gateway, GatewayOptions, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};

const PORTAL_PORT: u16 = 443;
/// Another UDP port with a listener on the gateway's side: the edge must keep it unreachable.
const OTHER_UDP_PORT: u16 = 4443;
const LOCKOUT_SECS: u64 = 10;

/// Answers every datagram with itself, until dropped.
struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    fn start(address: SocketAddr) -> Result<UdpEcho> {
        let socket = UdpSocket::bind(address).with_context(|| format!("bind udp {address}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buffer) {
                    let _ = socket.send_to(&buffer[..n], from);
                }
            }
        });
        Ok(UdpEcho {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends one datagram from inside the client namespace and reports whether it came back within 1 s.
fn udp_answered(client: &TargetNet, to: SocketAddr) -> Result<bool> {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'probe',('{}',{}))\ntry:\n print(s.recv(64).decode())\nexcept socket.timeout:\n print('timeout')\n",
        to.ip(),
        to.port()
    );
    let out = run_with_timeout(
        client.exec("python3").args(["-c", &script]),
        Duration::from_secs(10),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "probe")
}

/// True when `ping` from the client namespace gets an echo reply.
fn ping_answered(client: &TargetNet, to: Ipv4Addr) -> Result<bool> {
    let out = run_with_timeout(
        client
            .exec("ping")
            .args(["-n", "-c", "3", "-i", "0.2", "-W", "1"])
            .arg(to.to_string()),
        Duration::from_secs(15),
    )?;
    Ok(out.status.success())
}

/// Port states nmap reports for `to`, from the client namespace: (port, state) for every port it lists,
/// plus the state and count of the ports it folded into "Ignored State".
struct Scan {
    ports: Vec<(u16, String)>,
    ignored: Option<(String, u32)>,
}

fn nmap(client: &TargetNet, kind: &str, ports: &str, to: Ipv4Addr) -> Result<Scan> {
    let out = run_with_timeout(
        client.exec("nmap").args([
            "-Pn",
            "-n",
            kind,
            "-p",
            ports,
            "--min-rate",
            "20000",
            "--max-retries",
            "1",
            "--host-timeout",
            "240s",
            "-oG",
            "-",
            &to.to_string(),
        ]),
        Duration::from_secs(300),
    )?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "nmap failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("Host:") && l.contains("Ports:"))
        .with_context(|| format!("no port line in nmap's output:\n{text}"))?;
    let mut scan = Scan {
        ports: Vec::new(),
        ignored: None,
    };
    for field in line.split('\t') {
        if let Some(list) = field.strip_prefix("Ports: ") {
            for entry in list.split(", ") {
                let mut parts = entry.split('/');
                let port: u16 = parts.next().unwrap_or("").trim().parse()?;
                let state = parts.next().unwrap_or("").to_owned();
                scan.ports.push((port, state));
            }
        } else if let Some(rest) = field.strip_prefix("Ignored State: ") {
            // "filtered (65534)"
            let (state, count) = rest.split_once(" (").context("odd Ignored State")?;
            let count = count.trim_end_matches(')').parse()?;
            scan.ignored = Some((state.to_owned(), count));
        }
    }
    Ok(scan)
}

/// One metric value from `/admin/metrics`.
async fn metric(admin: &Client, name_and_labels: &str) -> Result<u64> {
    let text = admin.get("/admin/metrics").await?.text();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name_and_labels)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .with_context(|| format!("no {name_and_labels} in the metrics:\n{text}"))
}

fn drops(reason: &str) -> String {
    format!("sallyport_edge_packets_total{{verdict=\"drop\",reason=\"{reason}\"}}")
}

fn passes(reason: &str) -> String {
    format!("sallyport_edge_packets_total{{verdict=\"pass\",reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_leaves_only_the_portal_reachable() -> Result<()> {
    require_root()?;
    require_tool("/usr/bin/nmap")?;
    require_tool("/usr/bin/ping")?;
    // The client side: its root-side veth end is the gateway's public interface.
    let outside = TargetNet::create("edgec")?;
    // The target side: the gateway's internal interface, with a real sshd behind it.
    let inside = TargetNet::create("edget")?;
    let user = ensure_test_user()?;
    let _sshd = Sshd::start(&inside, SshdOptions::default())?;
    let portal_ip = outside.host_addr();
    let client_ip = outside.ns_addr();
    let _udp_other = UdpEcho::start(SocketAddr::from((portal_ip, OTHER_UDP_PORT)))?;

    // Controls: without the edge, the host answers pings, refuses closed ports, and echoes UDP.
    assert!(
        ping_answered(&outside, portal_ip)?,
        "control: ping unanswered without the edge"
    );
    let control = nmap(&outside, "-sS", "22,80,443,8443", portal_ip)?;
    assert!(
        control.ports.iter().all(|(_, state)| state == "closed"),
        "control: without the edge and the gateway these ports answer closed: {:?}",
        control.ports
    );
    assert!(
        udp_answered(&outside, SocketAddr::from((portal_ip, OTHER_UDP_PORT)))?,
        "control: udp {OTHER_UDP_PORT} unanswered without the edge"
    );
    assert!(
        !quic_answered(
            outside.exec("python3"),
            SocketAddr::from((portal_ip, PORTAL_PORT))
        )?,
        "control: a QUIC answer on {PORTAL_PORT} before the gateway started"
    );

    let options = GatewayOptions::for_net(&inside)
        .listen(SocketAddr::from((portal_ip, PORTAL_PORT)))
        .extra_toml("[edge]")
        .extra_toml("required = true")
        .extra_toml("[[edge.interfaces]]")
        .extra_toml(&format!("name = \"{}\"", outside.host_if()))
        .extra_toml("role = \"public\"")
        .extra_toml("[[edge.interfaces]]")
        .extra_toml(&format!("name = \"{}\"", inside.host_if()))
        .extra_toml("role = \"internal\"");
    let mut options = options;
    options.extra_portal = vec![
        "login_source_max_failures = 3".into(),
        format!("login_backoff_initial_secs = {LOCKOUT_SECS}"),
        format!("login_backoff_max_secs = {LOCKOUT_SECS}"),
    ];
    let mut gateway = Gateway::start(options).await?;
    let stderr = gateway.stderr();
    assert!(
        stderr.contains("edge attached") && stderr.contains(outside.host_if()),
        "the gateway does not say it attached the edge:\n{stderr}"
    );
    let admin = login_admin(&gateway).await?;
    let page = admin.get("/admin/edge").await?.text();
    assert!(
        page.contains("Attached")
            && page.contains(outside.host_if())
            && page.contains(inside.host_if()),
        "the edge page does not show both interfaces:\n{page}"
    );
    assert_eq!(metric(&admin, "sallyport_edge_attached").await?, 1);

    // Pings go unanswered.
    let icmp_before = metric(&admin, &drops("icmp")).await?;
    assert!(
        !ping_answered(&outside, portal_ip)?,
        "ping answered through the edge"
    );
    assert!(metric(&admin, &drops("icmp")).await? >= icmp_before + 3);

    // Every TCP port: exactly the portal open, the rest filtered (no RST comes back).
    let started = Instant::now();
    let scan = nmap(&outside, "-sS", "1-65535", portal_ip)?;
    let open: Vec<u16> = scan
        .ports
        .iter()
        .filter(|(_, state)| state == "open")
        .map(|(port, _)| *port)
        .collect();
    assert_eq!(open, vec![PORTAL_PORT], "open ports: {:?}", scan.ports);
    assert!(
        scan.ports
            .iter()
            .all(|(port, state)| *port == PORTAL_PORT || state == "filtered"),
        "ports other than the portal's that are not filtered: {:?}",
        scan.ports
    );
    let (ignored_state, ignored) = scan.ignored.clone().unwrap_or_default();
    assert!(
        ignored_state == "filtered" && ignored as usize + scan.ports.len() == 65535,
        "the other ports should be filtered: {ignored_state} ({ignored}), listed {:?}",
        scan.ports
    );
    eprintln!("full TCP scan took {:?}", started.elapsed());
    assert!(metric(&admin, &drops("closed_port")).await? >= 65534);

    // UDP: the portal port is reachable (the gateway's QUIC endpoint answers), another listening port is
    // not.
    assert!(
        quic_answered(
            outside.exec("python3"),
            SocketAddr::from((portal_ip, PORTAL_PORT))
        )?,
        "udp to the portal port did not reach the QUIC endpoint"
    );
    assert!(
        !udp_answered(&outside, SocketAddr::from((portal_ip, OTHER_UDP_PORT)))?,
        "udp {OTHER_UDP_PORT} answered through the edge"
    );
    let udp_scan = nmap(&outside, "-sU", &format!("53,123,{PORTAL_PORT}"), portal_ip)?;
    for (port, state) in &udp_scan.ports {
        let expected: &[&str] = if *port == PORTAL_PORT {
            &["open", "open|filtered"]
        } else {
            &["open|filtered"]
        };
        assert!(
            expected.contains(&state.as_str()),
            "udp {port} is {state} (no ICMP unreachable may come back)"
        );
    }

    // An SSH session from the client's side: the portal port in, the target's replies through the
    // internal interface as a flow the gateway opened.
    let client_ns = Arc::new(NsSockets::enter(outside.name())?);
    let from_client = admin.clone().dial_from(client_ns.clone());
    let replies_before = metric(&admin, &passes("flow_reply")).await?;
    let alpha = target_id(&from_client, "alpha").await?;
    let mut terminal = Terminal::open(&from_client, alpha, &user.name, &user.password).await?;
    terminal.expect_connected().await?;
    terminal.type_text("echo edge-$((6*7))\r").await?;
    assert!(
        terminal
            .read_until(Duration::from_secs(15), |r| r.output.contains("edge-42"))
            .await?,
        "the marker did not come back through the edge"
    );
    terminal.close().await;
    assert!(
        metric(&admin, &passes("flow_reply")).await? > replies_before,
        "no target reply counted as a flow reply"
    );
    assert!(metric(&admin, &passes("portal_tcp")).await? > 0);

    // Lockout: three wrong passwords from the client, and the edge drops it for the lockout period.
    let attacker = gateway.client()?.dial_from(client_ns.clone());
    let origin = attacker.origin();
    for attempt in 0..3 {
        let response = attacker
            .post_form(
                "/login",
                &[("username", "admin"), ("password", "wrong-password")],
                Some(&origin),
            )
            .await?;
        assert_eq!(response.status, 401, "wrong password {attempt}");
    }
    let locked_at = Instant::now();
    let page = admin.get("/admin/edge").await?.text();
    assert!(
        page.contains(&format!("{client_ip}/32")),
        "the locked-out source is not in the blocklist:\n{page}"
    );
    let blocked_before = metric(&admin, &drops("blocklisted")).await?;
    let address = SocketAddr::from((portal_ip, PORTAL_PORT));
    let sockets = client_ns.clone();
    let refused = tokio::task::spawn_blocking(move || sockets.connect(address)).await?;
    let error = match refused {
        Ok(_) => bail!("a locked-out source connected through the edge"),
        Err(error) => error,
    };
    let timed_out = error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::TimedOut);
    assert!(
        timed_out,
        "the connect should time out (dropped), got: {error:#}"
    );
    assert!(
        metric(&admin, &drops("blocklisted")).await? > blocked_before,
        "the blocklist counter did not rise"
    );

    // After the lockout the source gets through again.
    let deadline = locked_at + Duration::from_secs(LOCKOUT_SECS + 15);
    loop {
        let sockets = client_ns.clone();
        if tokio::task::spawn_blocking(move || sockets.connect(address))
            .await?
            .is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the source is still blocked {LOCKOUT_SECS} s after its lockout ended");
        }
    }
    assert!(
        locked_at.elapsed() >= Duration::from_secs(LOCKOUT_SECS - 1),
        "the block ended after {:?}, before the lockout did",
        locked_at.elapsed()
    );

    // Stopping the gateway detaches the edge: the host answers pings again.
    gateway.stop()?;
    assert!(
        ping_answered(&outside, portal_ip)?,
        "the edge stayed attached after the gateway stopped"
    );
    Ok(())
}
