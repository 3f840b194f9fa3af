//! Fuzzes the SSH proxy's file-transfer watchers (`sallyport_transfer::sftp::SftpWatch` and
//! `sallyport_transfer::scp::ScpWatch`) on hostile bytes from either side. The first byte picks the protocol
//! and the split size: SFTP streams alternate between the client's and the target's bytes; scp reads a
//! remote command line first (`scp -t DIR`, `scp -f FILE`), then the source's bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use sallyport_transfer::scp::{ScpCommand, ScpWatch};
    use sallyport_transfer::sftp::SftpWatch;
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(first >> 1).max(1);
    if first & 1 == 0 {
        let mut watch = SftpWatch::default();
        for (i, chunk) in rest.chunks(split).enumerate() {
            let fed = if i % 2 == 0 {
                watch.client_bytes(chunk).map(drop)
            } else {
                watch.server_bytes(chunk)
            };
            if fed.is_err() {
                return;
            }
        }
        let _ = watch.finish();
    } else {
        let (line, stream) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        let Some(command) = ScpCommand::parse(line) else {
            return;
        };
        let mut watch = ScpWatch::new(command);
        for chunk in stream.chunks(split) {
            if watch.source_bytes(chunk).is_err() {
                return;
            }
        }
        let _ = watch.finish();
    }
});
