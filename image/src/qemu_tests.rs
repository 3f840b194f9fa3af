//! The QEMU command line and the accelerator policy, checked without booting anything.

use super::*;

fn words(qemu: &Qemu) -> Vec<String> {
    qemu.args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The value after each occurrence of `flag`.
fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

fn for_a_person() -> Qemu {
    Qemu {
        vars: "/w/OVMF_VARS.fd".into(),
        disk: "/w/disk.qcow2".into(),
        disk_format: DiskFormat::Qcow2,
        config_drive: None,
        network: Network::Forward443 { port: 8443 },
        console: Console::Terminal,
        qmp: None,
        accel: Accel::Tcg,
    }
}

fn for_a_test() -> Qemu {
    Qemu {
        vars: "/t/OVMF_VARS.fd".into(),
        disk: "/t/disk.raw".into(),
        disk_format: DiskFormat::Raw,
        config_drive: Some("/t/config.img".into()),
        network: Network::Tap {
            ifname: "tap0".into(),
        },
        console: Console::SerialOnStdio,
        qmp: Some("/t/qmp.sock".into()),
        accel: Accel::Tcg,
    }
}

#[test]
fn run_vm_boots_uefi_from_the_overlay_with_443_forwarded() {
    let args = words(&for_a_person());
    assert_eq!(
        values(&args, "-drive"),
        [
            "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "if=pflash,format=raw,file=/w/OVMF_VARS.fd",
            "if=virtio,format=qcow2,file=/w/disk.qcow2",
        ]
    );
    assert_eq!(
        values(&args, "-netdev"),
        ["user,id=net0,hostfwd=tcp:127.0.0.1:8443-:443,hostfwd=udp:127.0.0.1:8443-:443"]
    );
    assert_eq!(values(&args, "-device"), ["virtio-net-pci,netdev=net0"]);
    assert!(args.contains(&"-nographic".to_owned()));
    assert!(args.contains(&"-no-reboot".to_owned()));
    assert!(values(&args, "-serial").is_empty());
    assert!(values(&args, "-qmp").is_empty());
}

#[test]
fn the_harness_boots_on_its_tap_with_the_serial_port_on_stdio() {
    let args = words(&for_a_test());
    assert_eq!(
        values(&args, "-drive")[2..],
        [
            "if=virtio,format=raw,file=/t/disk.raw",
            "if=virtio,format=raw,readonly=on,file=/t/config.img",
        ]
    );
    assert_eq!(
        values(&args, "-netdev"),
        ["tap,id=net0,ifname=tap0,script=no,downscript=no"]
    );
    assert_eq!(values(&args, "-serial"), ["stdio"]);
    assert_eq!(values(&args, "-display"), ["none"]);
    assert_eq!(
        values(&args, "-qmp"),
        ["unix:/t/qmp.sock,server=on,wait=off"]
    );
    for flag in ["-nodefaults", "-no-user-config", "-no-reboot"] {
        assert!(args.contains(&flag.to_owned()), "{flag} missing: {args:?}");
    }
    assert!(!args.contains(&"-nographic".to_owned()));
}

#[test]
fn the_accelerator_is_passed_with_its_cpu_model() {
    let mut qemu = for_a_test();
    let args = words(&qemu);
    assert_eq!(values(&args, "-accel"), ["tcg"]);
    assert_eq!(values(&args, "-cpu"), ["max"]);
    qemu.accel = Accel::Kvm;
    let args = words(&qemu);
    assert_eq!(values(&args, "-accel"), ["kvm"]);
    assert_eq!(values(&args, "-cpu"), ["host"]);
}

#[test]
fn inside_a_namespace_qemu_runs_through_ip_netns_exec() {
    let qemu = for_a_test();
    let command = qemu.command_in_netns("spe2e-lan-1");
    assert_eq!(command.get_program(), "ip");
    let args: Vec<_> = command.get_args().collect();
    assert_eq!(args[..4], ["netns", "exec", "spe2e-lan-1", QEMU]);
    assert_eq!(args[4..], qemu.args());
    assert_eq!(qemu.command().get_program(), QEMU);
}

#[test]
fn software_emulation_unless_kvm_is_asked_for() {
    for (asked, env, dev_kvm) in [
        (false, None, true),
        (false, Some(""), true),
        (false, Some("0"), true),
        (false, None, false),
    ] {
        assert_eq!(
            Accel::decide(asked, env, dev_kvm).ok(),
            Some(Accel::Tcg),
            "{asked} {env:?} {dev_kvm}"
        );
    }
    assert_eq!(Accel::decide(true, None, true).ok(), Some(Accel::Kvm));
    assert_eq!(Accel::decide(false, Some("1"), true).ok(), Some(Accel::Kvm));
}

#[test]
fn kvm_asked_for_without_dev_kvm_or_in_unclear_words_is_refused() {
    let missing = Accel::decide(true, None, false).map_err(|e| e.to_string());
    assert_eq!(
        missing,
        Err("KVM was asked for, but there is no /dev/kvm".to_owned())
    );
    let unclear = Accel::decide(false, Some("yes"), true).map_err(|e| e.to_string());
    assert_eq!(
        unclear,
        Err("SALLYPORT_KVM=\"yes\": only 1 (use KVM) or 0 is understood".to_owned())
    );
}
