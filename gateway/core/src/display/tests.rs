//! Unit tests of the desktop stream's parts: control JSON, the input codec, damage geometry and update
//! framing (the golden vectors shared with the browser are in `tests/golden.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

use super::input::{TAG_BUTTON, TAG_CAD, TAG_KEY, TAG_MOVE, TAG_UNICODE};
use super::*;
use crate::frames::{Credential, FrameError};

#[test]
fn clipboard_messages_may_be_long_but_other_control_may_not() {
    let text = "ä\n\t".repeat(20_000);
    let json = serde_json::to_string(&DesktopControl::Clipboard { text: text.clone() }).unwrap();
    assert!(json.len() > crate::frames::MAX_CONTROL_LEN);
    assert_eq!(
        parse_desktop_text(&json),
        Ok(DesktopMessage::Clipboard(text))
    );
    let too_long = serde_json::to_string(&DesktopControl::Clipboard {
        text: "x".repeat(MAX_CLIPBOARD_BYTES + 1),
    })
    .unwrap();
    assert!(matches!(
        parse_desktop_text(&too_long),
        Err(FrameError::TooLarge(_))
    ));
    let padded_resize = format!(
        r#"{{"type":"resize","width":800,"height":600}}{}"#,
        " ".repeat(crate::frames::MAX_CONTROL_LEN)
    );
    assert!(matches!(
        parse_desktop_text(&padded_resize),
        Err(FrameError::TooLarge(_))
    ));
    assert!(matches!(
        parse_desktop_text(&"x".repeat(MAX_DESKTOP_TEXT + 1)),
        Err(FrameError::TooLarge(_))
    ));
    // The text never reaches a log.
    let debug = format!(
        "{:?}",
        DesktopControl::Clipboard {
            text: "secret".into()
        }
    );
    assert!(!debug.contains("secret"), "{debug}");
}

#[test]
fn clipboard_policy_caps_and_switches_off() {
    assert!(ClipboardPolicy::default().enabled());
    assert!(!ClipboardPolicy::OFF.enabled());
    let big = ClipboardPolicy {
        max_bytes: usize::MAX,
        ..ClipboardPolicy::default()
    };
    assert_eq!(big.cap(), MAX_CLIPBOARD_BYTES);
    assert_eq!(
        DesktopServerControl::Clipboard {
            text: "a\"b".into()
        }
        .to_json(),
        r#"{"type":"clipboard","text":"a\"b"}"#
    );
}

fn rect(x: u16, y: u16, width: u16, height: u16) -> Rect {
    Rect {
        x,
        y,
        width,
        height,
    }
}

#[test]
fn connect_parses_clamps_and_redacts() {
    let control = parse_control(
        r#"{"type":"connect","username":"alice","password":"s3cret","width":1281,"height":50}"#,
    )
    .unwrap();
    assert!(!format!("{control:?}").contains("s3cret"));
    let request = connect_request(control).unwrap();
    assert_eq!(
        request.size,
        DesktopSize {
            width: 1280,
            height: MIN_DIMENSION
        }
    );
    assert_eq!(request.credential, Credential::Password("s3cret".into()));
}

#[test]
fn hostile_controls_are_refused() {
    for case in [
        r#"{"type":"connect","username":"","password":"x","width":800,"height":600}"#,
        r#"{"type":"connect","username":"a\u0000","password":"x","width":800,"height":600}"#,
        r#"{"type":"connect","username":"a","password":"","width":800,"height":600}"#,
        r#"{"type":"connect","username":"a","password":"x","width":800,"height":600,"x":1}"#,
        r#"{"type":"resize","width":800,"height":600}"#,
    ] {
        let parsed = parse_control(case).and_then(connect_request);
        assert!(parsed.is_err(), "{case}");
    }
}

#[test]
fn input_round_trips() {
    let events = vec![
        InputEvent::Key {
            scancode: 0xE04B,
            down: true,
        },
        InputEvent::Key {
            scancode: 0x1E,
            down: false,
        },
        InputEvent::Unicode {
            ch: 'é',
            down: true,
        },
        InputEvent::MouseMove { x: 10, y: 65535 },
        InputEvent::MouseButton {
            button: 2,
            down: true,
            x: 1,
            y: 2,
        },
        InputEvent::Wheel {
            vertical: true,
            units: -120,
        },
        InputEvent::CtrlAltDel,
        InputEvent::ReleaseAll,
    ];
    assert_eq!(parse_input(&encode_input(&events)).unwrap(), events);
}

#[test]
fn hostile_input_is_refused() {
    for case in [
        &[][..],
        &[9],
        &[TAG_KEY, 1, 0x12],
        &[TAG_KEY, 2, 0, 0x1e],
        &[TAG_KEY, 1, 0x12, 0x1e],
        &[TAG_KEY, 1, 0, 0],
        &[TAG_UNICODE, 1, 0, 0, 0xd8, 0],
        &[TAG_UNICODE, 1, 0, 0, 0, 7],
        &[TAG_BUTTON, 1, 5, 0, 0, 0, 0],
        &[TAG_MOVE, 0, 0, 0],
    ] {
        assert!(parse_input(case).is_err(), "{case:?}");
    }
    assert_eq!(
        parse_input(&vec![TAG_CAD; MAX_INPUT_MESSAGE + 1]),
        Err(FrameError::TooLarge(MAX_INPUT_MESSAGE + 1))
    );
}

#[test]
fn damage_merges_touching_and_stays_bounded() {
    let mut damage = Damage::default();
    damage.add(rect(0, 0, 10, 10));
    damage.add(rect(10, 0, 10, 10));
    damage.add(rect(100, 100, 1, 1));
    damage.add(rect(5, 5, 0, 10));
    let mut rects = damage.take();
    rects.sort_by_key(|r| r.x);
    assert_eq!(rects, vec![rect(0, 0, 20, 10), rect(100, 100, 1, 1)]);
    assert!(damage.is_empty());
    for i in 0..1000u16 {
        damage.add(rect(i * 3 % 4000, i * 7 % 3000, 1, 1));
    }
    let rects = damage.take();
    assert!(rects.len() <= MAX_RECTS, "{}", rects.len());
    assert!(!rects.is_empty());
}

#[test]
fn clipping_keeps_rects_inside() {
    assert_eq!(
        rect(10, 10, 100, 100).clipped(50, 60),
        Some(rect(10, 10, 40, 50))
    );
    assert_eq!(rect(60, 10, 10, 10).clipped(50, 60), None);
    assert_eq!(rect(65535, 65535, 65535, 65535).clipped(100, 100), None);
}

#[test]
fn hostile_updates_are_refused() {
    let mut writer = UpdateWriter::new(8, 2);
    writer.push(rect(4, 0, 8, 2), Encoding::Solid, &[0; 4]);
    assert!(parse_update(&writer.finish()).is_err());
    let mut writer = UpdateWriter::new(8, 2);
    writer.push(rect(0, 0, 1, 1), Encoding::Solid, &[0; 3]);
    assert!(parse_update(&writer.finish()).is_err());
    assert!(parse_update(&[1, 0, 8, 0, 2, 0xff, 0xff]).is_err());
    assert!(
        parse_update(&[
            1, 0, 8, 0, 2, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 2, 0xff, 0xff, 0xff, 0xff
        ])
        .is_err()
    );
}
