//! Fuzzes the desktop stream (`sallyport_core::display`): browser control and input messages, display
//! updates, and the damage accumulator's bound on whatever rectangles the bytes describe.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use sallyport_core::display::{Damage, MAX_RECTS, Rect, encode_input, parse_control, parse_input, parse_update};
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_control(text);
    }
    if let Ok(events) = parse_input(data) {
        assert_eq!(parse_input(&encode_input(&events)).ok(), Some(events));
    }
    let _ = parse_update(data);
    let mut damage = Damage::default();
    for c in data.chunks_exact(8) {
        let v = |i: usize| u16::from_be_bytes([c[i], c[i + 1]]);
        damage.add(Rect { x: v(0), y: v(2), width: v(4), height: v(6) });
    }
    assert!(damage.take().len() <= MAX_RECTS);
});
