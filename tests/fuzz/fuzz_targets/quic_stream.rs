//! Fuzzes the native client's QUIC stream start (`sallyport_core::quic`): the preamble, then frames fed
//! in arbitrary splits to the bounded decoder, each turned into a client message.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use sallyport_core::quic::{FrameDecoder, Preamble};
    let rest = match Preamble::parse(data) {
        Ok(Some((_, used))) => &data[used..],
        Ok(None) | Err(_) => data,
    };
    let split = usize::from(rest.first().copied().unwrap_or(1)).max(1);
    let mut decoder = FrameDecoder::new(64 * 1024);
    'feed: for chunk in rest.chunks(split) {
        decoder.extend(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let _ = frame.into_client_message();
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
});
