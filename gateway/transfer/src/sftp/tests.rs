//! Tests of the SFTP watcher: transfers and changes across arbitrary splits, and its bounds on hostile bytes.
#![allow(clippy::unwrap_used)]
use super::*;

fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = fields.concat();
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend(body);
    out
}

fn string(s: &[u8]) -> Vec<u8> {
    [(s.len() as u32).to_be_bytes().as_slice(), s].concat()
}

fn id(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn transfer(direction: TransferDirection, path: &str, bytes: u64, complete: bool) -> TransferEvent {
    TransferEvent::Transfer(FileTransfer {
        protocol: TransferProtocol::Sftp,
        direction,
        path: path.into(),
        name: String::new(),
        bytes,
        complete,
    })
}

#[test]
fn uploads_downloads_and_changes_are_reported_across_splits() {
    let big = vec![7u8; 200_000];
    let client = [
        packet(
            FXP_OPEN,
            &[
                &id(1),
                &string(b"/tmp/up.bin"),
                &0x1au32.to_be_bytes(),
                &[0; 4],
            ],
        ),
        packet(
            FXP_WRITE,
            &[&id(2), &string(b"H1"), &0u64.to_be_bytes(), &string(&big)],
        ),
        packet(
            FXP_WRITE,
            &[
                &id(3),
                &string(b"H1"),
                &200_000u64.to_be_bytes(),
                &string(&[7; 24]),
            ],
        ),
        packet(FXP_CLOSE, &[&id(4), &string(b"H1")]),
        packet(
            FXP_OPEN,
            &[
                &id(5),
                &string(b"/etc/host\x1bname"),
                &1u32.to_be_bytes(),
                &[0; 4],
            ],
        ),
        packet(
            FXP_READ,
            &[
                &id(6),
                &string(b"H2"),
                &0u64.to_be_bytes(),
                &32768u32.to_be_bytes(),
            ],
        ),
        packet(FXP_CLOSE, &[&id(7), &string(b"H2")]),
        packet(FXP_REMOVE, &[&id(8), &string(b"/tmp/up.bin")]),
        packet(
            FXP_EXTENDED,
            &[
                &id(9),
                &string(b"posix-rename@openssh.com"),
                &string(b"/a"),
                &string(b"/b"),
            ],
        ),
        packet(
            FXP_OPEN,
            &[
                &id(10),
                &string(b"/tmp/cut"),
                &0x1au32.to_be_bytes(),
                &[0; 4],
            ],
        ),
        packet(
            FXP_WRITE,
            &[
                &id(11),
                &string(b"H3"),
                &0u64.to_be_bytes(),
                &string(&[1; 10]),
            ],
        ),
    ];
    let server = [
        packet(FXP_HANDLE, &[&id(1), &string(b"H1")]),
        packet(FXP_HANDLE, &[&id(5), &string(b"H2")]),
        packet(FXP_DATA, &[&id(6), &string(b"gateway\n")]),
        packet(FXP_HANDLE, &[&id(10), &string(b"H3")]),
    ];
    let mut watch = SftpWatch::default();
    let mut events = Vec::new();
    // Requests and answers interleave as on the wire; bytes arrive in odd pieces.
    let order = [
        (0, true),
        (0, false),
        (1, true),
        (2, true),
        (3, true),
        (4, true),
        (1, false),
        (5, true),
        (2, false),
        (6, true),
        (7, true),
        (8, true),
        (9, true),
        (3, false),
        (10, true),
    ];
    for (index, from_client) in order {
        let bytes = if from_client {
            &client[index]
        } else {
            &server[index]
        };
        for piece in bytes.chunks(7777) {
            if from_client {
                events.extend(watch.client_bytes(piece).unwrap());
            } else {
                watch.server_bytes(piece).unwrap();
            }
        }
    }
    events.extend(watch.finish());
    assert_eq!(
        events,
        vec![
            transfer(TransferDirection::Upload, "/tmp/up.bin", 200_024, true),
            transfer(
                TransferDirection::Download,
                "/etc/host\u{fffd}name",
                8,
                true
            ),
            TransferEvent::Change("remove /tmp/up.bin".into()),
            TransferEvent::Change("rename /a to /b".into()),
            transfer(TransferDirection::Upload, "/tmp/cut", 10, false),
        ]
    );
    assert_eq!(
        events[0].to_string(),
        "file transfer (sftp): upload /tmp/up.bin, 200024 bytes"
    );
    // Nothing of the file data was kept.
    assert!(watch.requests.head.capacity() <= MAX_HEAD);
}

#[test]
fn a_packet_over_the_limit_is_an_error() {
    let mut watch = SftpWatch::default();
    let error = watch
        .client_bytes(&[0x00, 0x10, 0x00, 0x01, 3])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "client broke the sftp protocol: a packet of 1048577 bytes (at most 262144 are allowed)"
    );
    let mut watch = SftpWatch::default();
    assert!(watch.server_bytes(&[0, 0, 0, 0]).is_err());
}

#[test]
fn too_many_open_files_or_pending_requests_are_errors() {
    let mut watch = SftpWatch::default();
    for n in 0..MAX_OPEN as u32 {
        let name = format!("/f{n}");
        watch
            .client_bytes(&packet(
                FXP_OPEN,
                &[
                    &id(n),
                    &string(name.as_bytes()),
                    &1u32.to_be_bytes(),
                    &[0; 4],
                ],
            ))
            .unwrap();
        watch
            .server_bytes(&packet(FXP_HANDLE, &[&id(n), &string(name.as_bytes())]))
            .unwrap();
    }
    watch
        .client_bytes(&packet(
            FXP_OPEN,
            &[
                &id(99_999),
                &string(b"/one-more"),
                &1u32.to_be_bytes(),
                &[0; 4],
            ],
        ))
        .unwrap();
    let error = watch
        .server_bytes(&packet(FXP_HANDLE, &[&id(99_999), &string(b"X")]))
        .unwrap_err();
    assert!(error.what.contains("files open at once"), "{error}");

    let mut watch = SftpWatch::default();
    let mut result = Ok(Vec::new());
    for n in 0..=MAX_PENDING as u32 {
        result = watch.client_bytes(&packet(
            FXP_OPEN,
            &[&id(n), &string(b"/x"), &1u32.to_be_bytes(), &[0; 4]],
        ));
    }
    assert!(result.unwrap_err().what.contains("unanswered"));
}

#[test]
fn random_bytes_never_panic_and_memory_stays_bounded() {
    let mut watch = SftpWatch::default();
    let mut seed = 7u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_be_bytes();
        // Small lengths keep the framer inside the limit most of the time, so parsing is reached.
        let piece = [
            0,
            0,
            0,
            bytes[0] % 40,
            bytes[1] % 8,
            bytes[2],
            bytes[3],
            bytes[4],
        ];
        if watch.client_bytes(&piece).is_err() {
            watch = SftpWatch::default();
        }
        if watch.server_bytes(&bytes).is_err() {
            watch = SftpWatch::default();
        }
        assert!(watch.requests.head.len() <= MAX_HEAD && watch.responses.head.len() <= MAX_HEAD);
        assert!(watch.files.len() <= MAX_OPEN && watch.opening.len() <= MAX_PENDING);
    }
}
