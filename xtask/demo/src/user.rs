//! The local accounts targets log in (sshd reads /etc/shadow, xrdp's sesman asks PAM): created once, their
//! password set each time.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proc::run;

/// Creates the account `name` (a home directory, bash) unless it exists, sets `password`, and returns its
/// home directory.
pub fn ensure(name: &str, password: &str) -> Result<PathBuf> {
    let exists = || {
        Command::new("id")
            .args(["-u", name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !exists() {
        let created = run(
            Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", name]),
            None,
            Duration::from_secs(30),
        );
        // Another process (a test beside this one) may have created it at the same moment.
        if let Err(error) = created
            && !exists()
        {
            return Err(error.context(format!("creating the account {name}")));
        }
    }
    // chpasswd fails while another process holds /etc/shadow's lock: retry a few times.
    let mut last = None;
    for _ in 0..10 {
        match run(
            &mut Command::new("chpasswd"),
            Some(&format!("{name}:{password}\n")),
            Duration::from_secs(20),
        ) {
            Ok(_) => {
                last = None;
                break;
            }
            Err(error) => {
                last = Some(error);
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    if let Some(error) = last {
        return Err(error.context(format!("setting the password of {name}")));
    }
    let home = PathBuf::from(format!("/home/{name}"));
    if !home.is_dir() {
        bail!("{name} has no home directory at {}", home.display());
    }
    Ok(home)
}

/// A fresh random password (18 hex digits from the kernel's random source).
pub fn random_password() -> Result<String> {
    let mut seed = [0u8; 9];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .context("reading /dev/urandom")?;
    Ok(seed.iter().map(|b| format!("{b:02x}")).collect())
}
