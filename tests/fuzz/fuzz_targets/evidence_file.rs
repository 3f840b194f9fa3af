//! Fuzzes what the reviewer reads from files it did not write: evidence files (`check_evidence`: JSON, hex,
//! totals, chain, seal) and, through `Store::from_evidence`, the chunk decoder (zstd with the previous
//! chunks as dictionary, then the event framing) on whatever chunk bytes the file carries.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sallyport_recordings::check_evidence(data, None);
    if let Ok((store, id)) = sallyport_recordings::Store::from_evidence(data) {
        let _ = store.events(&id);
    }
});
