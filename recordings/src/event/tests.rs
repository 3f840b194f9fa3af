//! Tests of `event`.

use super::*;

fn encode(events: &[TimedEvent]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut prev: Option<u64> = None;
    for e in events {
        let time = prev.map_or(e.at_ms, |p| e.at_ms - p);
        prev = Some(e.at_ms);
        match &e.event {
            Event::Output(d) => put_record(&mut buf, time, KIND_OUTPUT, d),
            Event::Input(d) => put_record(&mut buf, time, KIND_INPUT, d),
            Event::Resize { cols, rows } => {
                put_record(&mut buf, time, KIND_RESIZE, &resize_payload(*cols, *rows))
            }
            Event::Marker(m) => put_record(&mut buf, time, KIND_MARKER, m.as_bytes()),
            Event::Desktop(d) => {
                let (kind, payload) = desktop_record(d);
                put_record(&mut buf, time, kind, &payload)
            }
            Event::FileTransfer(t) => {
                put_record(&mut buf, time, KIND_FILE_TRANSFER, &transfer_payload(t))
            }
        }
    }
    buf
}

#[test]
fn desktop_events_round_trip_and_malformed_ones_fail() {
    let desktop = [
        DesktopEvent::Activation {
            width: 1024,
            height: 768,
            io_channel_id: 1003,
            user_channel_id: 1007,
            share_id: 0x1_0203,
            drdynvc_channel_id: Some(1004),
        },
        DesktopEvent::ServerPdu {
            fast_path: true,
            data: vec![0, 1, 2],
        },
        DesktopEvent::ServerPdu {
            fast_path: false,
            data: vec![3],
        },
        DesktopEvent::Keyframe {
            width: 2,
            height: 3,
            png: vec![0x89, b'P'],
        },
        DesktopEvent::Input(vec![6]),
        DesktopEvent::Resize {
            width: 800,
            height: 600,
        },
        DesktopEvent::Clipboard {
            to_target: true,
            bytes: 70_000,
        },
        DesktopEvent::Clipboard {
            to_target: false,
            bytes: 0,
        },
    ];
    let events: Vec<TimedEvent> = desktop
        .iter()
        .enumerate()
        .map(|(i, d)| TimedEvent {
            at_ms: i as u64,
            event: Event::Desktop(d.clone()),
        })
        .collect();
    assert_eq!(decode_events(&encode(&events)).unwrap(), events);
    for (kind, payload) in [
        (KIND_DESKTOP_ACTIVATION, &[0u8; 14][..]),
        (KIND_DESKTOP_PDU, &[2, 0][..]),
        (KIND_DESKTOP_PDU, &[][..]),
        (KIND_DESKTOP_KEYFRAME, &[0, 1, 0][..]),
        (KIND_DESKTOP_RESIZE, &[0, 1, 0][..]),
        (KIND_DESKTOP_CLIPBOARD, &[2, 0, 0, 0, 1][..]),
        (KIND_DESKTOP_CLIPBOARD, &[1, 0, 0, 1][..]),
    ] {
        let mut raw = Vec::new();
        put_record(&mut raw, 0, kind, payload);
        assert!(decode_events(&raw).is_err(), "{kind} {payload:?}");
    }
}

#[test]
fn file_transfers_round_trip_and_malformed_ones_fail() {
    let transfers = [
        FileTransfer {
            protocol: TransferProtocol::Sftp,
            direction: TransferDirection::Upload,
            path: "/home/u/é.bin".into(),
            name: String::new(),
            bytes: 100_000,
            complete: true,
        },
        FileTransfer {
            protocol: TransferProtocol::Scp,
            direction: TransferDirection::Download,
            path: "/etc".into(),
            name: "hostname".into(),
            bytes: u64::MAX,
            complete: false,
        },
    ];
    let events: Vec<TimedEvent> = transfers
        .iter()
        .map(|t| TimedEvent {
            at_ms: 5,
            event: Event::FileTransfer(t.clone()),
        })
        .collect();
    assert_eq!(decode_events(&encode(&events)).unwrap(), events);
    assert_eq!(
        transfers[1].to_string(),
        "file transfer (scp): download /etc (as hostname), 18446744073709551615 bytes, cut off"
    );
    let good = transfer_payload(&transfers[0]);
    let mut bad_protocol = good.clone();
    bad_protocol[0] = 3;
    let mut bad_complete = good.clone();
    bad_complete[2] = 2;
    let mut long_path = good.clone();
    long_path[11] = 0xff;
    let mut not_utf8 = good.clone();
    not_utf8[13] = 0xff;
    for payload in [
        &good[..12],
        &bad_protocol,
        &bad_complete,
        &long_path,
        &not_utf8,
    ] {
        let mut raw = Vec::new();
        put_record(&mut raw, 0, KIND_FILE_TRANSFER, payload);
        assert!(decode_events(&raw).is_err(), "{payload:?}");
    }
}

#[test]
fn varint_lengths_match_encoding() {
    for v in [
        0,
        1,
        127,
        128,
        16383,
        16384,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut buf = Vec::new();
        put_varint(&mut buf, v);
        assert_eq!(buf.len(), varint_len(v), "{v}");
        let mut r = Reader {
            bytes: &buf,
            pos: 0,
        };
        assert_eq!(r.varint(), Some(v));
    }
}

#[test]
fn overlong_varint_is_rejected() {
    let mut r = Reader {
        bytes: &[0xff; 11],
        pos: 0,
    };
    assert_eq!(r.varint(), None);
    // Ten bytes whose last one carries more than the top bit of a u64.
    let mut bytes = vec![0xff; 9];
    bytes.push(0x02);
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
    };
    assert_eq!(r.varint(), None);
}

#[test]
fn records_round_trip() {
    let events = vec![
        TimedEvent {
            at_ms: 70_000,
            event: Event::Marker("connected".into()),
        },
        TimedEvent {
            at_ms: 70_000,
            event: Event::Resize { cols: 80, rows: 24 },
        },
        TimedEvent {
            at_ms: 70_001,
            event: Event::Input(b"l".to_vec()),
        },
        TimedEvent {
            at_ms: 70_300,
            event: Event::Output(vec![0, 255, 27, b'[']),
        },
        TimedEvent {
            at_ms: 99_999_999,
            event: Event::Output(Vec::new()),
        },
    ];
    let raw = encode(&events);
    assert_eq!(decode_events(&raw).unwrap(), events);
}

#[test]
fn bad_records_are_errors() {
    let check = |bytes: &[u8], what: &str| {
        let err = decode_events(bytes).unwrap_err();
        assert_eq!(err.what, what, "{bytes:?}");
    };
    check(&[0x80], "bad time varint");
    check(&[0], "truncated record kind");
    check(&[0, KIND_OUTPUT], "bad length varint");
    check(&[0, KIND_OUTPUT, 5, 1, 2], "payload longer than the chunk");
    check(&[0, 12, 0], "unknown record kind");
    check(&[0, 0, 0], "unknown record kind");
    check(
        &[0, KIND_RESIZE, 3, 1, 2, 3],
        "resize payload is not 4 bytes",
    );
    check(&[0, KIND_MARKER, 1, 0xff], "marker is not UTF-8");
    // u64::MAX then a delta of one.
    let mut raw = Vec::new();
    put_record(&mut raw, u64::MAX, KIND_INPUT, b"");
    put_record(&mut raw, 1, KIND_INPUT, b"");
    check(&raw, "time overflows");
}

/// A small deterministic generator (xorshift64*), so the garbage is the same on every run.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
    let valid = encode(&[
        TimedEvent {
            at_ms: 5,
            event: Event::Output(b"hello world".to_vec()),
        },
        TimedEvent {
            at_ms: 9,
            event: Event::Resize {
                cols: 120,
                rows: 40,
            },
        },
        TimedEvent {
            at_ms: 12,
            event: Event::Marker("exit status 0".into()),
        },
    ]);
    let mut decoded_ok = 0;
    for round in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let bytes: Vec<u8> = if round % 2 == 0 {
            // Pure garbage, biased towards small bytes so that valid kinds and lengths appear.
            (0..len)
                .map(|_| (rng.next() % if round % 4 == 0 { 8 } else { 256 }) as u8)
                .collect()
        } else {
            // A valid chunk with a few bytes flipped or cut.
            let mut b = valid.clone();
            for _ in 0..1 + rng.next() % 3 {
                let i = (rng.next() as usize) % b.len();
                b[i] ^= rng.next() as u8;
            }
            b.truncate((rng.next() as usize) % (b.len() + 1));
            b
        };
        if let Ok(events) = decode_events(&bytes) {
            decoded_ok += 1;
            // Whatever decodes cannot hold more payload than there were bytes.
            assert!(events.len() <= bytes.len());
        }
    }
    assert!(
        decoded_ok > 0,
        "the generator should also produce some decodable input"
    );
}

#[test]
fn truncation_keeps_characters_whole() {
    assert_eq!(truncate_utf8("héllo", 2), "h");
    assert_eq!(truncate_utf8("héllo", 3), "hé");
    assert_eq!(truncate_utf8("abc", 10), "abc");
}
