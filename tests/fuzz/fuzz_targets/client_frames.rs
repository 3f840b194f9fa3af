//! Fuzzes the browser's terminal control messages (`sallyport_core::frames`), text and binary.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sallyport_core::frames::parse_client_text(text);
    }
    let _ = sallyport_core::frames::parse_client_binary(data);
});
