//! The desktop stream's golden vectors (`golden/desktop.json`): every input message encodes to its bytes
//! and decodes to its events, every display update is written as its bytes and parses to its
//! rectangles, and every refused vector is refused. The browser's codec checks the same file
//! (gateway/portal/tests/desktop_protocol_js.rs), so the two sides cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sallyport_core::display::{
    Encoding, InputEvent, Rect, Update, UpdateRect, UpdateWriter, encode_input, parse_input,
    parse_update,
};
use serde_json::Value;

fn golden() -> Value {
    let text = include_str!("golden/desktop.json");
    serde_json::from_str(text).expect("golden/desktop.json is JSON")
}

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    value
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing in {value}"))
}

fn uint<T: TryFrom<u64>>(value: &Value, name: &str) -> T {
    let n = field(value, name).as_u64().expect("an unsigned number");
    T::try_from(n).unwrap_or_else(|_| panic!("{name} out of range in {value}"))
}

fn flag(value: &Value, name: &str) -> bool {
    field(value, name).as_bool().expect("a boolean")
}

fn event(value: &Value) -> InputEvent {
    match field(value, "type").as_str().expect("a type") {
        "key" => InputEvent::Key {
            scancode: uint(value, "scancode"),
            down: flag(value, "down"),
        },
        "unicode" => {
            let text = field(value, "ch").as_str().expect("a character");
            let mut chars = text.chars();
            let ch = chars.next().expect("one character");
            assert!(chars.next().is_none(), "one character in {value}");
            InputEvent::Unicode {
                ch,
                down: flag(value, "down"),
            }
        }
        "mouse_move" => InputEvent::MouseMove {
            x: uint(value, "x"),
            y: uint(value, "y"),
        },
        "mouse_button" => InputEvent::MouseButton {
            button: uint(value, "button"),
            down: flag(value, "down"),
            x: uint(value, "x"),
            y: uint(value, "y"),
        },
        "wheel" => InputEvent::Wheel {
            vertical: flag(value, "vertical"),
            units: i16::try_from(field(value, "units").as_i64().expect("a number"))
                .expect("units fit i16"),
        },
        "ctrl_alt_del" => InputEvent::CtrlAltDel,
        "release_all" => InputEvent::ReleaseAll,
        other => panic!("unknown event type {other}"),
    }
}

fn encoding(name: &str) -> Encoding {
    match name {
        "solid" => Encoding::Solid,
        "png" => Encoding::Png,
        "jpeg" => Encoding::Jpeg,
        other => panic!("unknown encoding {other}"),
    }
}

fn update(value: &Value) -> Update {
    let rects = field(value, "rects")
        .as_array()
        .expect("rects")
        .iter()
        .map(|r| UpdateRect {
            rect: Rect {
                x: uint(r, "x"),
                y: uint(r, "y"),
                width: uint(r, "w"),
                height: uint(r, "h"),
            },
            encoding: encoding(field(r, "encoding").as_str().expect("an encoding")),
            data: unhex(field(r, "data").as_str().expect("data")),
        })
        .collect();
    Update {
        width: uint(value, "width"),
        height: uint(value, "height"),
        rects,
    }
}

fn vectors<'a>(golden: &'a Value, kind: &str) -> &'a [Value] {
    let list = field(golden, kind).as_array().expect("a list");
    assert!(!list.is_empty(), "no {kind} vectors");
    list
}

fn name_and_bytes(vector: &Value) -> (&str, Vec<u8>) {
    (
        field(vector, "name").as_str().expect("a name"),
        unhex(field(vector, "hex").as_str().expect("hex")),
    )
}

#[test]
fn input_vectors_encode_and_decode() {
    let golden = golden();
    for vector in vectors(&golden, "input") {
        let (name, bytes) = name_and_bytes(vector);
        let events: Vec<InputEvent> = field(vector, "events")
            .as_array()
            .expect("events")
            .iter()
            .map(event)
            .collect();
        assert_eq!(encode_input(&events), bytes, "encoding {name}");
        assert_eq!(parse_input(&bytes), Ok(events), "decoding {name}");
    }
}

#[test]
fn update_vectors_encode_and_decode() {
    let golden = golden();
    for vector in vectors(&golden, "update") {
        let (name, bytes) = name_and_bytes(vector);
        let meaning = update(vector);
        let mut writer = UpdateWriter::new(meaning.width, meaning.height);
        for r in &meaning.rects {
            writer.push(r.rect, r.encoding, &r.data);
        }
        assert_eq!(writer.finish(), bytes, "writing {name}");
        assert_eq!(parse_update(&bytes), Ok(meaning), "parsing {name}");
    }
}

#[test]
fn refused_vectors_are_refused() {
    let golden = golden();
    for vector in vectors(&golden, "input_refused") {
        let (name, bytes) = name_and_bytes(vector);
        assert!(parse_input(&bytes).is_err(), "input {name} was accepted");
    }
    for vector in vectors(&golden, "update_refused") {
        let (name, bytes) = name_and_bytes(vector);
        assert!(parse_update(&bytes).is_err(), "update {name} was accepted");
    }
}
