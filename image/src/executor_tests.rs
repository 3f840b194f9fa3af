//! The executor's path resolution, and the steps it runs without root (files written, the command line).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::*;
use crate::plan::Step;

fn paths(build: PathBuf) -> Paths {
    Paths {
        build,
        project: "/src/sallyport".into(),
        cargo: "/opt/cargo".into(),
    }
}

#[test]
fn symbolic_paths_resolve_and_commands_run_in_the_project() {
    let paths = paths("/b".into());
    assert_eq!(paths.rootfs(), PathBuf::from("/b/root"));
    assert_eq!(
        paths.resolve("$CARGO -p x $PROJECT/image/files $ROOT/etc $BUILD/esp.img"),
        "/opt/cargo -p x /src/sallyport/image/files /b/root/etc /b/esp.img"
    );
    let command = paths
        .command(&["$CARGO".into(), "build".into(), "$BUILD/x".into()])
        .unwrap();
    assert_eq!(command.get_program(), "/opt/cargo");
    assert_eq!(command.get_args().collect::<Vec<_>>(), ["build", "/b/x"]);
    assert_eq!(
        command.get_current_dir(),
        Some(std::path::Path::new("/src/sallyport"))
    );
    assert!(paths.command(&[]).is_err());
}

#[test]
fn files_and_the_kernel_command_line_are_written_where_the_plan_says() {
    let build = std::env::temp_dir().join(format!("sallyport-image-exec-{}", std::process::id()));
    std::fs::create_dir_all(&build).unwrap();
    let hash = "ab".repeat(32);
    std::fs::write(build.join("roothash"), format!("{hash}\n")).unwrap();
    let plan = Plan {
        steps: vec![
            Step {
                title: "a file".into(),
                action: Action::Write {
                    path: "$ROOT/etc/hostname".into(),
                    mode: 0o640,
                    content: "sallyport\n".into(),
                },
            },
            Step {
                title: "the command line".into(),
                action: Action::Cmdline("root=/dev/mapper/root quiet".into()),
            },
        ],
    };
    let mut ran: Vec<String> = Vec::new();
    let mut record = |command: &mut Command| {
        ran.push(format!("{command:?}"));
        Ok(())
    };
    let result = execute(&plan, &paths(build.clone()), &mut record);
    let hostname = std::fs::read_to_string(build.join("root/etc/hostname"));
    let mode = std::fs::metadata(build.join("root/etc/hostname")).map(|m| m.permissions().mode());
    let cmdline = std::fs::read_to_string(build.join("cmdline"));
    std::fs::remove_dir_all(&build).unwrap();
    result.unwrap();
    assert!(ran.is_empty(), "no command was due: {ran:?}");
    assert_eq!(hostname.unwrap(), "sallyport\n");
    assert_eq!(mode.unwrap() & 0o777, 0o640);
    assert_eq!(
        cmdline.unwrap(),
        format!("root=/dev/mapper/root quiet sallyport.roothash={hash}")
    );
}

#[test]
fn a_root_hash_that_is_not_64_hex_digits_stops_the_build() {
    let build = std::env::temp_dir().join(format!("sallyport-image-hash-{}", std::process::id()));
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("roothash"), "not a hash\n").unwrap();
    let plan = Plan {
        steps: vec![Step {
            title: "the command line".into(),
            action: Action::Cmdline("root=/dev/mapper/root".into()),
        }],
    };
    let result = execute(&plan, &paths(build.clone()), &mut |_: &mut Command| Ok(()));
    let written = build.join("cmdline").exists();
    std::fs::remove_dir_all(&build).unwrap();
    let error = format!("{:#}", result.unwrap_err());
    assert!(error.contains("unexpected root hash"), "{error}");
    assert!(error.contains("image step 1 (the command line)"), "{error}");
    assert!(!written);
}
