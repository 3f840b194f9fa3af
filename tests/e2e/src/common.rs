//! Small helpers shared by the harness: root and tool checks, bounded waits, free ports and
//! process handling by PID (spawning with a time limit, signalling, finding descendants).

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Fails unless the process runs as root (namespaces, veths and sshd need it).
pub fn require_root() -> Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        bail!(
            "e2e tests need root (network namespaces); run them through cargo xtask ci as root \
             (current uid: {uid:?})"
        );
    }
    Ok(())
}

/// Fails with an installation hint unless the program at `path` exists.
pub fn require_tool(path: &str) -> Result<()> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        bail!("{path} is missing; `cargo xtask ci` installs it (Debian packages of the e2e peers)")
    }
}

/// Polls `cond` every 50 ms until it returns true or `timeout` passes; returns the last result.
///
/// Blocks the calling thread: inside async code prefer [`wait_until_async`].
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async form of [`wait_until`]: polls the future-returning `cond` every 50 ms.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `cmd` to completion with its output captured, killing it (by PID) after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {desc}"))?;
    let out_reader = drain(child.stdout.take());
    let err_reader = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            bail!(
                "{desc} did not finish within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Runs `cmd` (bounded by 30 s) and fails with its stderr unless it exits successfully.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, Duration::from_secs(30))?;
    if !out.status.success() {
        bail!(
            "{desc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Sends `signal` (a name such as "TERM" or "KILL") to one process by PID via /usr/bin/kill.
pub fn signal_pid(pid: u32, signal: &str) -> Result<()> {
    let out = run_with_timeout(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
        Duration::from_secs(5),
    )?;
    if !out.status.success() {
        bail!(
            "kill -{signal} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits (bounded) for `child` to exit; SIGKILLs it if it is still running after `timeout`.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break,
        }
    }
    let _ = child.kill();
    child.wait().ok()
}

/// All live descendants of `pid` (children, grandchildren, ...), read from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the command name, which is in parentheses and may contain spaces.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for &(p, ppid) in &parents {
            if ppid == parent && !found.contains(&p) {
                found.push(p);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether a process with this PID exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The last `max` bytes of a text (for error messages that quote logs).
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Sends a QUIC long-header packet of a reserved version (RFC 9000 §15, 0x?a?a?a?a) with `python3` (a command
/// that runs python3 where the probe should come from), padded to 1200 bytes like an Initial, and reports whether a Version Negotiation packet (long
/// header, version 0) came back within 1 s: the gateway's QUIC endpoint answers exactly that.
pub fn quic_answered(mut python3: Command, to: SocketAddr) -> Result<bool> {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\np=bytes([0xc0])+bytes.fromhex('1a2a3a4a')+bytes([8])+bytes(range(1,9))+bytes([8])+bytes(range(9,17))\ns.sendto(p+bytes(1200-len(p)),('{}',{}))\ntry:\n r=s.recv(2048)\n print('vn' if len(r)>=7 and r[0]&0x80 and r[1:5]==bytes(4) else 'other')\nexcept socket.timeout:\n print('timeout')\n",
        to.ip(),
        to.port()
    );
    let out = run_with_timeout(python3.args(["-c", &script]), Duration::from_secs(10))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "vn")
}

/// Whether process `pid` runs (exists and is not a zombie waiting for a parent that does not reap it,
/// as a daemon's process is in a container whose first process reaps nothing).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// CPU seconds (user + system) from a `/proc/.../stat` file's text.
fn stat_cpu_seconds(stat: &str) -> Result<f64> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, counting pid and comm).
    let ticks = |index: usize| -> Result<f64> {
        Ok(fields
            .get(index - 3)
            .ok_or_else(|| anyhow::anyhow!("short /proc stat"))?
            .parse::<f64>()?)
    };
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let hz = *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    });
    Ok((ticks(14)? + ticks(15)?) / hz)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// CPU seconds used so far by a process's threads whose name (as the kernel keeps it, at most 15 bytes) starts
/// with `name`.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> Result<f64> {
    let mut total = 0.0;
    let mut found = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() == &name[..name.len().min(15)] {
            found = true;
            total += stat_cpu_seconds(&std::fs::read_to_string(dir.join("stat"))?)?;
        }
    }
    if !found {
        anyhow::bail!("process {pid} has no thread named {name}");
    }
    Ok(total)
}
