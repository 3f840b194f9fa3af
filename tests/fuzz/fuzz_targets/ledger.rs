//! Fuzzes the ledger's parsers and its audit on hostile input: entry bodies (`ledger::decode_entry`), kept checkpoint
//! files (`Checkpoint::from_file`), and a whole ledger of hostile entries with a correct chain audited against a
//! database that holds none of the sessions it names (`ledger::audit_entries_for_fuzzing`).
#![no_main]
use sallyport_recordings::{Checkpoint, ledger};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ledger::decode_entry(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Checkpoint::from_file(text);
    }
    // The input as entries: u16 length, u8 time, body.
    let mut entries = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && entries.len() < 64 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 512;
        let at = u64::from(rest[2]) * 1000;
        rest = &rest[3..];
        let take = len.min(rest.len());
        entries.push((at, rest[..take].to_vec()));
        rest = &rest[take..];
    }
    let _ = ledger::audit_entries_for_fuzzing(&entries);
});
