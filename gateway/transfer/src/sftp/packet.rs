//! SFTP packet framing and field reading: the bounded sans-io layer under the watcher. Each direction's bytes
//! are cut into packets by their length prefix; of each packet only the first [`MAX_HEAD`] bytes are kept.

/// Largest SFTP packet followed: OpenSSH's sftp-server (`SFTP_MAX_MSG_LENGTH`) and client refuse larger.
pub const MAX_PACKET: usize = 256 * 1024;
/// Bytes of a packet kept for parsing: type, id and the fields read (two paths, a handle, lengths).
pub const MAX_HEAD: usize = 9 * 1024;

/// One direction's packet framing: the head of the current packet and how much of it is still to come.
#[derive(Debug, Default)]
pub(super) struct Framer {
    /// Length prefix bytes seen of the next packet (0..4).
    len_bytes: Vec<u8>,
    /// The current packet's length (after the length field), once known.
    len: Option<usize>,
    /// The kept head of the current packet.
    pub(super) head: Vec<u8>,
    /// Bytes of the current packet consumed so far (kept or skipped).
    seen: usize,
}

/// A whole packet: its kept head and its real length.
pub(super) struct Packet {
    pub(super) head: Vec<u8>,
    pub(super) len: usize,
}

impl Framer {
    /// Feeds bytes; calls `each` for every packet that completes. Errors on a packet too long.
    pub(super) fn feed(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(Packet) -> Result<(), String>,
    ) -> Result<(), String> {
        while !bytes.is_empty() {
            let Some(len) = self.len else {
                let want = 4 - self.len_bytes.len();
                let (take, rest) = bytes.split_at(want.min(bytes.len()));
                self.len_bytes.extend_from_slice(take);
                bytes = rest;
                if let [a, b, c, d] = self.len_bytes[..] {
                    let len = u32::from_be_bytes([a, b, c, d]) as usize;
                    if len == 0 || len > MAX_PACKET {
                        return Err(format!(
                            "a packet of {len} bytes (at most {MAX_PACKET} are allowed)"
                        ));
                    }
                    self.len = Some(len);
                    self.len_bytes.clear();
                }
                continue;
            };
            let take = (len - self.seen).min(bytes.len());
            let keep = take.min(MAX_HEAD.saturating_sub(self.head.len()));
            self.head.extend_from_slice(&bytes[..keep]);
            self.seen += take;
            bytes = &bytes[take..];
            if self.seen == len {
                let head = std::mem::take(&mut self.head);
                self.len = None;
                self.seen = 0;
                each(Packet { head, len })?;
            }
        }
        Ok(())
    }
}

/// A cursor over one packet's head.
pub(super) struct Fields<'a>(pub(super) &'a [u8]);

impl<'a> Fields<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(b);
        Some(u64::from_be_bytes(bytes))
    }
    pub(super) fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
    /// The length a string claims, and how many of its bytes the head holds (file data is not kept).
    pub(super) fn string_len(&mut self) -> Option<u32> {
        self.u32()
    }
}
