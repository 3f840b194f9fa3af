//! `sallyport-bench boot` (run by `cargo xtask bench boot`): how long the appliance image takes from power-on
//! to "443 answering with the edge attached", and how big it is.
//!
//! Each round copies the built image to a fresh disk with a fresh config drive and boots it twice on a test LAN
//! (see [`crate::appliance`]): a cold first boot, which also makes the data partition and the TLS key, and a
//! warm second boot of the same disk, which is what an appliance does every day. "Answering" is the first
//! HTTPS `GET /login` from the client namespace that gets a 200; the configuration requires the edge, so the
//! gateway only listens once XDP is attached. The guest's own journal (read off the data partition after a
//! clean shutdown) splits each boot into firmware and loader (wall clock minus the guest's clock) + the OS
//! until it starts the gateway + the gateway's own start-up, names the slowest units, and gives the gateway's
//! share of the guest's boot as the ratio against the operating system's own boot in the same run.
//!
//! Every boot is bounded by a deadline; the VM, the namespaces and the temporary disks are removed at the end.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::appliance::{Accel, Appliance, Lan, gateway_toml, image_path, partition, read_data_dir};
use crate::common::{require_root, run_with_timeout};
use crate::netns::TargetNet;
use crate::tunnel::{NsSockets, spawn_forward_to};

/// Cold + warm boots per run (`SALLYPORT_BENCH_ROUNDS` overrides, 1 to 9); the report gives medians.
const ROUNDS: usize = 3;
/// One boot's deadline (software emulation answered in about 50 s here).
const BOOT_DEADLINE: Duration = Duration::from_secs(300);

/// One boot: wall-clock from QEMU's start, and the guest's own timeline where the journal has it.
struct Boot {
    /// QEMU started → the portal answered HTTPS.
    answered: Duration,
    /// Guest monotonic clock: when systemd started the gateway unit and when it said the portal listens.
    gateway_started: Option<f64>,
    gateway_listening: Option<f64>,
    /// systemd's own "Startup finished in …" line.
    startup_line: Option<String>,
    /// The units that took longest to start, slowest first.
    slowest: Vec<(String, f64)>,
}

/// Runs the benchmark and prints the report.
pub async fn run() -> Result<()> {
    require_root()?;
    let image = image_path();
    if !image.exists() {
        bail!(
            "no appliance image at {}; `cargo xtask bench boot` builds it first",
            image.display()
        );
    }
    let client = TargetNet::create("bbc")?;
    let target = TargetNet::create("bbt")?;
    let lan = Lan::create(&client, &target)?;
    let client_ns = Arc::new(NsSockets::enter(client.name())?);
    let forward = spawn_forward_to(
        client_ns.clone(),
        std::net::SocketAddr::from((lan.guest, 443)),
    )?;
    let url = format!("https://127.0.0.1:{}/", forward.port());
    let toml = gateway_toml(&target.cidr(), None);

    let rounds = std::env::var("SALLYPORT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(ROUNDS)
        .clamp(1, 9);
    let mut accel = None;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 1..=rounds {
        let dir = tempfile::Builder::new().prefix("spbench-boot-").tempdir()?;
        let disk = Appliance::prepare(dir.path(), lan.guest, &toml)?;
        for (kind, boots) in [("cold", &mut cold), ("warm", &mut warm)] {
            let mut vm = Appliance::boot(dir.path(), lan.name())?;
            if *accel.get_or_insert(vm.accel()) != vm.accel() {
                bail!("the accelerator changed between boots; the figures would not compare");
            }
            let answered = wait_answer(&mut vm, &url)
                .await
                .with_context(|| format!("round {round}, {kind} boot"))?;
            vm.shutdown()?;
            let journal = dir.path().join(format!("journal-{kind}"));
            let timeline = guest_timeline(&disk, &journal).unwrap_or_default();
            let boot = Boot {
                answered,
                gateway_started: timeline.gateway_started,
                gateway_listening: timeline.gateway_listening,
                startup_line: timeline.startup_line,
                slowest: timeline.slowest,
            };
            println!(
                "round {round} {kind}: 443 answered after {:.1} s{}",
                boot.answered.as_secs_f64(),
                match (boot.gateway_started, boot.gateway_listening) {
                    (Some(start), Some(listen)) => format!(
                        "; guest clock: gateway started at {start:.1} s, listening at {listen:.1} s"
                    ),
                    _ => String::new(),
                }
            );
            boots.push(boot);
        }
    }

    let (raw, compressed, root) = image_sizes()?;
    let accel = accel.context("no boot happened")?;
    println!();
    println!(
        "sallyport-bench boot: {} ({}), {rounds} rounds, medians",
        match accel {
            Accel::Kvm => "KVM",
            Accel::Tcg =>
                "software emulation (TCG; SALLYPORT_KVM=1 boots under KVM where /dev/kvm works)",
        },
        std::env::consts::ARCH
    );
    println!(
        "  image: {:.1} MiB raw disk, {:.1} MiB zstd-compressed, root file system {:.1} MiB (erofs)",
        mib(raw),
        mib(compressed),
        mib(root)
    );
    for (kind, boots) in [("cold (first boot)", &cold), ("warm", &warm)] {
        let answered = median(boots.iter().map(|b| b.answered.as_secs_f64()));
        println!("  {kind}: power-on → 443 answering {answered:.1} s");
        let starts: Vec<f64> = boots.iter().filter_map(|b| b.gateway_started).collect();
        let listens: Vec<f64> = boots.iter().filter_map(|b| b.gateway_listening).collect();
        let own: Vec<f64> = boots
            .iter()
            .filter_map(|b| Some(b.gateway_listening? - b.gateway_started?))
            .collect();
        if starts.len() == boots.len() && listens.len() == boots.len() {
            let start = median(starts.iter().copied());
            let listen = median(listens.iter().copied());
            let own = median(own.iter().copied());
            // The guest's clock starts with its kernel: what comes before is firmware and boot loader.
            println!(
                "    firmware and loader {:.1} s; guest clock: the OS started the gateway at {start:.1} s, the portal \
                 listened at {listen:.1} s; the gateway's own start-up (edge attach included) {own:.2} s = {:.3} of \
                 the guest's boot to 443",
                (answered - listen).max(0.0),
                own / listen
            );
        } else {
            println!("    guest timeline: not found in every journal");
        }
        if let Some(line) = boots.iter().rev().find_map(|b| b.startup_line.as_deref()) {
            println!("    systemd: {line}");
        }
        if let Some(last) = boots.last()
            && !last.slowest.is_empty()
        {
            let units: Vec<String> = last
                .slowest
                .iter()
                .map(|(unit, seconds)| format!("{unit} {seconds:.1} s"))
                .collect();
            println!("    slowest units (last {kind} boot): {}", units.join(", "));
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Polls the portal (HTTPS `GET /login`, 200 expected) until it answers; returns when, since QEMU started (to
/// within the 200 ms poll interval plus one probe).
async fn wait_answer(vm: &mut Appliance, url: &str) -> Result<Duration> {
    let probe = crate::Client::new(url, None)?.with_timeout(Duration::from_secs(2));
    loop {
        if let Ok(response) = probe.get("/login").await
            && response.status == 200
        {
            return Ok(vm.uptime());
        }
        if !vm.is_running() {
            bail!(
                "qemu stopped before the portal answered; serial console:\n{}",
                vm.serial()
            );
        }
        if vm.uptime() > BOOT_DEADLINE {
            bail!(
                "the portal did not answer within {BOOT_DEADLINE:?}; serial console:\n{}",
                vm.serial()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sizes of the built image: raw disk (allocated length), compressed file, root partition.
fn image_sizes() -> Result<(u64, u64, u64)> {
    let raw_path = image_path();
    let raw = std::fs::metadata(&raw_path)?.len();
    let compressed = std::fs::metadata(raw_path.with_extension("raw.zst"))
        .map(|m| m.len())
        .context("the compressed image (sallyport.raw.zst) is missing")?;
    let (_, root) = partition(&raw_path, 2)?;
    Ok((raw, compressed, root))
}

/// What the guest's journal says about the last boot.
#[derive(Default)]
struct Timeline {
    gateway_started: Option<f64>,
    gateway_listening: Option<f64>,
    startup_line: Option<String>,
    slowest: Vec<(String, f64)>,
}

/// Reads the journal off the stopped appliance's data partition and finds the last boot's milestones.
fn guest_timeline(disk: &std::path::Path, out: &std::path::Path) -> Result<Timeline> {
    read_data_dir(disk, "/log/journal", out)?;
    let output = run_with_timeout(
        Command::new("journalctl")
            .arg("-D")
            .arg(out.join("journal"))
            .args(["-b", "--no-pager", "-o", "short-monotonic"]),
        Duration::from_secs(60),
    )?;
    Ok(parse_timeline(&String::from_utf8_lossy(&output.stdout)))
}

/// Finds the milestones in `journalctl -o short-monotonic` output (`[  12.345678] host unit[pid]: text`).
fn parse_timeline(journal: &str) -> Timeline {
    let mut timeline = Timeline::default();
    let mut starting: Vec<(String, f64)> = Vec::new();
    for line in journal.lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else {
            continue;
        };
        let Some((stamp, text)) = rest.split_once(']') else {
            continue;
        };
        let Ok(seconds) = stamp.trim().parse::<f64>() else {
            continue;
        };
        if text.contains("Started sallyport-gateway.service") && timeline.gateway_started.is_none()
        {
            timeline.gateway_started = Some(seconds);
        }
        if text.contains("portal listening") && timeline.gateway_listening.is_none() {
            timeline.gateway_listening = Some(seconds);
        }
        if let Some(at) = text.find("Startup finished in ") {
            timeline.startup_line = Some(text[at..].trim().to_owned());
        }
        // systemd's own lines: "Starting UNIT - Description..." then "Started UNIT" or "Finished UNIT".
        if let Some((_, message)) = text.split_once("systemd[1]: ") {
            let unit_of = |rest: &str| rest.split_whitespace().next().map(str::to_owned);
            if let Some(unit) = message.strip_prefix("Starting ").and_then(unit_of) {
                starting.push((unit, seconds));
            } else if let Some(unit) = message
                .strip_prefix("Started ")
                .or_else(|| message.strip_prefix("Finished "))
                .and_then(unit_of)
                && let Some(begun) = starting.iter().find(|(u, _)| *u == unit).map(|(_, t)| *t)
            {
                timeline.slowest.push((unit, seconds - begun));
            }
        }
    }
    timeline.slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    timeline.slowest.truncate(5);
    timeline
}

#[cfg(test)]
mod tests {
    use super::parse_timeline;

    #[test]
    fn the_timeline_is_read_from_monotonic_journal_lines() {
        let journal = "\
[    0.000000] sallyport kernel: Linux version 6.1.0
[   12.000000] sallyport systemd[1]: Starting systemd-networkd-wait-online.service - Wait for Network to be Configured...
[   19.500000] sallyport systemd[1]: Finished systemd-networkd-wait-online.service - Wait for Network to be Configured.
[   21.000000] sallyport systemd[1]: Starting sallyport-gateway.service - Sallyport gateway...
[   21.503112] sallyport systemd[1]: Started sallyport-gateway.service - Sallyport gateway (portal, edge, recorder).
[   22.904411] sallyport sallyport-gateway[311]: portal listening on [::]:443
[   23.100000] sallyport systemd[1]: Startup finished in 3.1s (kernel) + 4.2s (initrd) + 15.8s (userspace) = 23.1s.
";
        let timeline = parse_timeline(journal);
        assert_eq!(timeline.gateway_started, Some(21.503112));
        assert_eq!(timeline.gateway_listening, Some(22.904411));
        assert_eq!(
            timeline.startup_line.as_deref(),
            Some("Startup finished in 3.1s (kernel) + 4.2s (initrd) + 15.8s (userspace) = 23.1s.")
        );
        let slowest: Vec<(&str, u32)> = timeline
            .slowest
            .iter()
            .map(|(unit, seconds)| (unit.as_str(), (seconds * 10.0).round() as u32))
            .collect();
        assert_eq!(
            slowest,
            [
                ("systemd-networkd-wait-online.service", 75),
                ("sallyport-gateway.service", 5)
            ]
        );
    }
}
