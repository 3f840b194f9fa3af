//! `cargo xtask demo --appliance`: the built appliance image under QEMU instead of the gateway on the host,
//! with the demo's targets (`sallyport_demo::Demo`) behind it. `sallyport_image::vm` does the booting (the
//! same code the e2e appliance test runs): a LAN namespace with a bridge and QEMU's tap, onto which the demo
//! network's veth moves, plus a veth back to the host holding the demo /24's `.1`, so the browser on the host
//! opens `https://GUEST/` directly. That, rather than QEMU's user-mode forwarding to a loopback port, keeps
//! the appliance as it is deployed: its own address on a LAN, the portal on 443, the edge on eth0 seeing real
//! traffic, the targets dialled across the same segment. Ctrl-C powers the guest off and removes it all.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use sallyport_demo::{Demo, Layout};
use sallyport_image::vm::{self, Appliance, Lan};

use crate::demo::{Tools, print_next_steps};

/// The LAN namespace (bridge, tap, the demo network's veth).
const LAN_NS: &str = "sallyport-demo-lan";
/// The host's veth onto the LAN (it holds the demo /24's `.1`, as the plain demo's veth does).
const HOST_IF: &str = "spdemolan0";
/// The guest's last octet in the demo /24 (the targets are .2 to .4).
const GUEST_HOST: u8 = 10;
/// The first boot (it also makes the data partition) reached the banner in 82–117 s under software
/// emulation on this project's 2 shared cores; this leaves room for a busier machine.
const BOOT: Duration = Duration::from_secs(300);

/// Boots the appliance with the demo targets behind it and runs until Ctrl-C (`stop`).
pub fn run(demo_dir: &Path, started: Instant, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    // Before the demo network exists, so a missing tool or image leaves nothing to clean up.
    vm::check_host()?;
    let image = sallyport_image::raw_image();
    let demo = Demo::start(demo_dir, Layout::demo())?;
    let layout = demo.layout().clone();
    // The demo network's host end leaves the root namespace for the bridge; the host's new veth takes its
    // address, so the targets' replies to .1 and the guest's traffic share one segment.
    let lan = Lan::create(LAN_NS)?;
    lan.attach(&layout.host_if)?;
    lan.connect_host(HOST_IF, &format!("{}/24", layout.addr(1)))?;
    let guest = layout.addr(GUEST_HOST);
    let url = format!("https://{guest}/");
    let guest_name = guest.to_string();
    let toml = vm::gateway_toml(&[&guest_name, "localhost"], &demo.targets_toml());
    let vm_dir = demo_dir.join("appliance");
    let _ = std::fs::remove_dir_all(&vm_dir);
    Appliance::prepare(&vm_dir, guest, &toml)?;
    let mut vm = Appliance::boot_own_group(&vm_dir, lan.name())?;
    eprintln!(
        "xtask: booting {} under {} (a few minutes without KVM; console: {})",
        image.display(),
        vm.accel().describe(),
        vm_dir.join("serial.log").display()
    );
    let cancelled = || stop.load(Ordering::SeqCst);
    let booted = vm
        .wait_serial_or(
            BOOT,
            |log| log.contains("password: ") && log.contains("fingerprint: "),
            cancelled,
        )
        .and_then(|_| wait_portal(guest, Duration::from_secs(60), &cancelled));
    let mut tools = None;
    let mut failed = None;
    match booted {
        Ok(()) => {
            eprintln!(
                "xtask: the appliance's portal answers {:.0} s after QEMU started ({:.0} s after `cargo xtask demo --appliance`)",
                vm.uptime().as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            let fingerprint = vm.printed("fingerprint").unwrap_or_default();
            println!("url: {url}");
            println!("fingerprint: {fingerprint}");
            println!("password: {}", vm.printed("password").unwrap_or_default());
            print_appliance_steps(&demo, &url, &fingerprint, &lan, &vm_dir);
            let tools = tools.insert(Tools::start(demo_dir)?);
            while !cancelled() && vm.is_running() {
                tools.poll();
                std::thread::sleep(Duration::from_millis(200));
            }
            if !cancelled() {
                failed = Some(anyhow::anyhow!(
                    "QEMU exited; the console: {}",
                    vm_dir.join("serial.log").display()
                ));
            }
        }
        Err(error) if cancelled() => {
            // A guest still booting may not heed the power key yet, and its fresh disk is thrown away.
            eprintln!("xtask: {error}; stopping QEMU");
            vm.kill();
        }
        Err(error) => failed = Some(error.context("the appliance did not come up")),
    }
    eprintln!("xtask: powering the appliance off and removing the demo network");
    if vm.is_running()
        && let Err(error) = vm.shutdown()
    {
        eprintln!("xtask: {error:#}");
    }
    if let Some(tools) = tools {
        tools.stop();
    }
    drop(lan);
    drop(demo);
    failed.map_or(Ok(()), Err)
}

/// Waits until the guest accepts TCP on 443 from the host. On the tap (unlike QEMU's user-mode network) an
/// accepted connection is the guest's own, so this shows the host's route to the portal works.
fn wait_portal(
    guest: Ipv4Addr,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((guest, 443));
    while TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        if cancelled() || Instant::now() > deadline {
            bail!(
                "the guest's portal ({addr}) did not accept a connection from the host within {timeout:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// The appliance's next steps: its recordings are inside the guest, so the reviewer reads them through the
/// portal (`--gateway`), as it would from an operator's machine.
fn print_appliance_steps(demo: &Demo, url: &str, fingerprint: &str, lan: &Lan, vm_dir: &Path) {
    let review = format!(
        "--gateway {} --fingerprint {fingerprint} --user admin",
        url.trim_end_matches('/')
    );
    print_next_steps(
        demo,
        url,
        fingerprint,
        ("through the portal, as admin or an auditor", &review),
    );
    println!(
        "The appliance runs under QEMU in namespace {} (bridge br0); this host reaches it on {HOST_IF}; its console: {}",
        lan.name(),
        vm_dir.join("serial.log").display()
    );
    println!("Press Ctrl-C to power the appliance off and remove the demo network.");
}
