//! The appliance image as an operator and a user meet it: `cargo xtask build-image`'s disk booted under QEMU
//! on a test LAN with a real sshd target and a client namespace, configured by a config drive.
//!
//! 1. It boots, creates its data partition, prints the one-time password on the console, and answers on 443
//!    with the edge attached; headless Chromium (through the client namespace) logs in, opens a terminal to
//!    the target and runs a marker command.
//!    The serial console refuses a wrong password and opens the review tool for the admin, showing the
//!    recorded session.
//! 2. From the client namespace nmap finds only 443/tcp open and only 443/udp answered; pings go unanswered.
//! 3. After a clean shutdown the data partition holds the recording with the marker and the journal with
//!    the gateway's logs; a second boot, on a disk grown by 1 GiB, keeps both (no new password, the old one
//!    works) and grows the data partition into the new space.
//! 4. One byte changed in the root partition and the boot stops at dm-verity: no portal ever answers.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::Locator;
use sallyport_e2e::appliance::{
    Appliance, Lan, data_fs_bytes, gateway_toml, partition, read_data_dir, read_data_file,
    wait_portal,
};
use sallyport_e2e::browser::steps::{click, fill, wait_text};
use sallyport_e2e::common::{quic_answered, run_with_timeout};
use sallyport_e2e::portal::ADMIN_PASSWORD;
use sallyport_e2e::tunnel::{NsSockets, spawn_forward_to};
use sallyport_e2e::{
    Browser, Client, Sshd, SshdOptions, TargetNet, ensure_test_user, require_root,
};
use sallyport_recordings::{Event, Store};

/// Boot deadline: software emulation answered in 29–42 s here; a cold first boot also makes the data partition.
const BOOT: Duration = Duration::from_secs(300);

/// Runs nmap (`-Pn -n --max-retries 1`, grepable output) from `client`; returns the whole output and its
/// `Ports:` field.
fn nmap(
    client: &TargetNet,
    args: &[&str],
    host: &str,
    timeout: Duration,
) -> Result<(String, String)> {
    let out = run_with_timeout(
        client
            .exec("nmap")
            .args(["-Pn", "-n", "--max-retries", "1", "-oG", "-"])
            .args(args)
            .arg(host),
        timeout,
    )?;
    let scan = String::from_utf8_lossy(&out.stdout).into_owned();
    let ports = scan
        .lines()
        .find_map(|l| l.split("Ports: ").nth(1))
        .with_context(|| format!("no ports in nmap's output:\n{scan}"))?
        .to_owned();
    Ok((scan, ports))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_appliance_boots_serves_records_and_refuses_a_modified_root() -> Result<()> {
    require_root()?;
    let client = TargetNet::create("apc")?;
    let target = TargetNet::create("apt")?;
    let user = ensure_test_user()?;
    let sshd = Sshd::start(&target, SshdOptions::default())?;
    let lan = Lan::create(&client, &target)?;
    let dir = tempfile::Builder::new()
        .prefix("spe2e-appliance-")
        .tempdir()?;
    let toml = gateway_toml(&target.cidr(), Some(&sshd.addr().to_string()));
    let disk = Appliance::prepare(dir.path(), lan.guest, &toml)?;

    // 1. First boot.
    let mut vm = Appliance::boot(dir.path(), lan.name())?;
    let accel = vm.accel();
    let console = vm.wait_serial(BOOT, |log| {
        log.contains("password: ") && log.contains("fingerprint: ")
    })?;
    let password = vm
        .printed("password")
        .context("no password on the console")?;
    assert!(
        console.contains("url: ") && console.contains("fingerprint: "),
        "the console should show the URL and the certificate fingerprint:\n{console}"
    );
    let client_ns = Arc::new(NsSockets::enter(client.name())?);
    let forward = spawn_forward_to(client_ns.clone(), SocketAddr::from((lan.guest, 443)))?;
    let url = format!("https://127.0.0.1:{}/", forward.port());
    wait_portal(&url, Duration::from_secs(60)).await?;
    eprintln!("first boot answered after {:?} ({accel:?})", vm.uptime());

    let browser = Browser::start().await?;
    let driver = browser.client();
    // The typed text differs from the output, so the marker on screen can only come from the shell.
    let marker = format!("appliance-42-{}", std::process::id());
    let steps = async {
        driver.goto(&url).await?;
        fill(driver, "#username", "admin").await?;
        fill(driver, "#password", &password).await?;
        click(driver, "#login").await?;
        fill(driver, "#new_password", ADMIN_PASSWORD).await?;
        fill(driver, "#repeat", ADMIN_PASSWORD).await?;
        click(driver, "#save-password").await?;
        click(driver, r#"tr[data-target="alpha"] a.connect"#).await?;
        fill(driver, "#target-username", &user.name).await?;
        fill(driver, "#target-password", &user.password).await?;
        click(driver, "#connect").await?;
        wait_text(driver, "#status", Duration::from_secs(60), |s| {
            s.starts_with("Connected")
        })
        .await?;
        let input = driver.find(Locator::Css(".xterm-helper-textarea")).await?;
        let typed = format!("appliance-$((6*7))-{}", std::process::id());
        input.send_keys(&format!("echo {typed}\n")).await?;
        wait_text(driver, ".xterm-rows", Duration::from_secs(30), |s| {
            s.contains(&marker)
        })
        .await?;
        input.send_keys("exit\n").await?;
        wait_text(driver, "#status", Duration::from_secs(30), |s| {
            !s.starts_with("Connected")
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    };
    if let Err(error) = steps.await {
        let shot = dir.path().join("failure.png");
        let _ = browser.screenshot(&shot).await;
        bail!(
            "browser steps failed ({error:#}); screenshot {}; console:\n{}",
            shot.display(),
            vm.serial()
        );
    }
    browser.close().await?;

    // The serial console: no shell, a login for auditors and admins with their portal account, which opens
    // the review tool on the recordings; a wrong password is refused.
    let console_log =
        |vm: &Appliance, from: usize| vm.serial().get(from..).unwrap_or("").to_owned();
    vm.wait_serial(Duration::from_secs(120), |log| {
        log.contains("Sallyport appliance console") && log.contains("login:")
    })?;
    let mark = vm.serial().len();
    vm.type_serial("admin\n")?;
    vm.wait_serial(Duration::from_secs(60), |log| {
        log.get(mark..).is_some_and(|l| l.contains("Password:"))
    })?;
    vm.type_serial("not-the-password\n")?;
    vm.wait_serial(Duration::from_secs(60), |log| {
        log.get(mark..).is_some_and(|l| {
            l.split_once("Wrong username or password.")
                .is_some_and(|(_, after)| after.contains("login:"))
        })
    })
    .with_context(|| format!("a wrong console password:\n{}", console_log(&vm, mark)))?;
    let mark = vm.serial().len();
    vm.type_serial("admin\n")?;
    vm.wait_serial(Duration::from_secs(60), |log| {
        log.get(mark..).is_some_and(|l| l.contains("Password:"))
    })?;
    vm.type_serial(&format!("{ADMIN_PASSWORD}\n"))?;
    // The reviewer's session list: its header and the recorded session to alpha.
    vm.wait_serial(Duration::from_secs(120), |log| {
        log.get(mark..)
            .is_some_and(|l| l.contains("Target") && l.contains("Integrity") && l.contains("alpha"))
    })
    .with_context(|| {
        format!(
            "the review tool on the console:\n{}",
            console_log(&vm, mark)
        )
    })?;
    let mark = vm.serial().len();
    vm.type_serial("q")?;
    vm.wait_serial(Duration::from_secs(60), |log| {
        log.get(mark..).is_some_and(|l| l.contains("login:"))
    })
    .with_context(|| {
        format!(
            "back to the login after quitting:\n{}",
            console_log(&vm, mark)
        )
    })?;

    // 2. What the network sees.
    let (scan, ports) = nmap(
        &client,
        &["-sS", "-p-", "--min-rate", "5000"],
        &lan.guest.to_string(),
        Duration::from_secs(600),
    )?;
    let open: Vec<&str> = ports.split(", ").filter(|p| p.contains("/open/")).collect();
    assert_eq!(open.len(), 1, "open ports: {ports}");
    assert!(open[0].starts_with("443/open/tcp"), "open ports: {ports}");
    assert!(
        scan.contains("Ignored State: filtered"),
        "the other ports should be filtered:\n{scan}"
    );
    let ping = run_with_timeout(
        client
            .exec("ping")
            .args(["-n", "-c", "2", "-W", "1"])
            .arg(lan.guest.to_string()),
        Duration::from_secs(15),
    )?;
    assert!(!ping.status.success(), "the appliance answered a ping");
    // UDP: the portal port reaches the gateway's QUIC endpoint (a reserved-version packet gets Version
    // Negotiation back); the edge drops probes to every other port unanswered, so nmap can only call them
    // open|filtered. (nmap's own probe to 443 gets no answer from QUIC, which ignores what it cannot parse.)
    assert!(
        quic_answered(
            client.exec("python3"),
            std::net::SocketAddr::from((lan.guest, 443))
        )?,
        "443/udp did not reach the appliance's QUIC endpoint"
    );
    let (_, ports) = nmap(
        &client,
        &["-sU", "-p", "53,123,161,443,500,4433,8443"],
        &lan.guest.to_string(),
        Duration::from_secs(120),
    )?;
    for port in ports.split(", ").filter(|p| !p.starts_with("443/")) {
        assert!(
            port.contains("/open|filtered/"),
            "a UDP port other than 443 got an answer: {ports}"
        );
    }

    // 3. Clean shutdown; the data partition has the recording and the journal.
    vm.shutdown()?;
    let copy = dir.path().join("recordings.db");
    read_data_file(&disk, "/lib/private/sallyport/recordings.db", &copy)?;
    let store = Store::open_read_only(&copy)?;
    let sessions = store.sessions()?;
    let session = sessions
        .iter()
        .find(|s| s.target == "alpha")
        .with_context(|| format!("no recorded session to alpha: {sessions:?}"))?;
    let output: Vec<u8> = store
        .events(&session.id)?
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Output(bytes) => Some(bytes),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        String::from_utf8_lossy(&output).contains(&marker),
        "the recording on the data partition lacks the marker"
    );
    let journal = dir.path().join("journal");
    read_data_dir(&disk, "/log/journal", &journal)?;
    let logs = run_with_timeout(
        Command::new("journalctl")
            .arg("-D")
            .arg(journal.join("journal"))
            .args(["--no-pager", "-o", "cat", "-u", "sallyport-gateway.service"]),
        Duration::from_secs(60),
    )?;
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(
        logs.contains("edge attached") && logs.contains("portal listening"),
        "the gateway's logs are not in the journal on the data partition:\n{logs}"
    );

    // Second boot, on a disk the operator grew by 1 GiB: same data, no new password, the changed one works,
    // and the data partition takes the new space.
    let (_, data_before) = partition(&disk, 4)?;
    let disk_size = std::fs::metadata(&disk)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)?
        .set_len(disk_size + (1 << 30))?;
    let mut vm = Appliance::boot(dir.path(), lan.name())?;
    vm.wait_serial(BOOT, |log| log.contains("fingerprint: "))?;
    wait_portal(&url, Duration::from_secs(60)).await?;
    assert!(
        vm.printed("password").is_none(),
        "a second boot must not make a new admin password"
    );
    let again = Client::new(&url, None)?;
    let origin = again.origin();
    let response = again
        .post_form(
            "/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
            Some(&origin),
        )
        .await?;
    assert_eq!(
        response.status, 303,
        "the password set before the reboot must still work"
    );
    vm.shutdown()?;
    let (_, data_after) = partition(&disk, 4)?;
    assert!(
        data_after >= data_before + (1 << 30) - (8 << 20),
        "the data partition did not grow into the added gigabyte: {data_before} -> {data_after} bytes"
    );
    let fs_size = data_fs_bytes(&disk, &dir.path().join("data.part"))?;
    assert!(
        fs_size + (8 << 20) >= data_after,
        "the file system was not grown with its partition: {fs_size} of {data_after} bytes"
    );
    read_data_file(&disk, "/lib/private/sallyport/recordings.db", &copy)?;
    assert!(
        Store::open_read_only(&copy)?
            .sessions()?
            .iter()
            .any(|s| s.id == session.id),
        "the recording did not survive the reboot"
    );

    // 4. One byte of the root partition changed offline: the boot must stop at dm-verity.
    let (root_offset, _) = partition(&disk, 2)?;
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disk)?;
        // The erofs superblock (at 1024) is read at mount, so the change cannot go unnoticed.
        file.seek(SeekFrom::Start(root_offset + 1024 + 16))?;
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte)?;
        file.seek(SeekFrom::Start(root_offset + 1024 + 16))?;
        file.write_all(&[byte[0] ^ 0xff])?;
    }
    let mut vm = Appliance::boot(dir.path(), lan.name())?;
    let refused = vm.wait_serial(BOOT, |log| {
        log.contains("verity")
            && (log.contains("corrupt") || log.contains("panic") || log.contains("failed"))
    });
    let console = vm.serial();
    assert!(
        refused.is_ok(),
        "a modified root booted without a dm-verity failure:\n{console}"
    );
    assert!(
        wait_portal(&url, Duration::from_secs(20)).await.is_err(),
        "the portal answered from a modified root"
    );
    vm.kill();
    Ok(())
}
