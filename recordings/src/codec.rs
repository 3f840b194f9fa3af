//! Chunk compression: each chunk is one zstd frame that may refer back to the session's recent raw bytes.
//!
//! Keeping a streaming zstd encoder per session would cost hundreds of KiB per idle session, so the writer owns one
//! reusable compression context and keeps, per session, only the last [`HISTORY_MAX`] raw bytes. Those bytes are given
//! to zstd as a raw-content dictionary for the next chunk, which exploits redundancy across chunks (a prompt, a
//! repeated `ls`) the way a single stream would. The history is the tail of the concatenated raw bytes of all
//! chunks since the last keyframe; every [`KEYFRAME_INTERVAL`]th chunk (seq 0, 64, 128, ...) starts with an empty
//! history, so a reader can start decoding at any keyframe. Decoding chunk N therefore needs chunks from the
//! keyframe before it up to N-1, in order.
//!
//! Two rules make the dictionary exactly reproducible by the reader: a history shorter than 8 bytes is not used
//! (zstd ignores such dictionaries when compressing), and a history that begins with zstd's dictionary magic number
//! loses its first byte (so zstd never parses recorded bytes as a structured dictionary).

use zstd::zstd_safe::{self, CCtx, DCtx};

use crate::error::RecordingError;

/// The most raw bytes carried from one chunk to the next as a dictionary.
pub(crate) const HISTORY_MAX: usize = 32 * 1024;
/// Every chunk whose seq is a multiple of this starts with an empty history.
pub(crate) const KEYFRAME_INTERVAL: u64 = 64;
/// The most raw bytes any chunk may claim; a reader refuses larger chunks before allocating.
pub(crate) const MAX_CHUNK_RAW: usize = 8 * 1024 * 1024;
/// zstd's level: fast, and good enough for terminal text.
const LEVEL: i32 = 3;
/// zstd's dictionary magic number, as it appears on disk.
const DICT_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();
/// Shorter dictionaries are ignored by zstd's compressor.
const MIN_DICT: usize = 8;

/// The raw bytes a session's next chunk may refer to.
#[derive(Debug, Default)]
pub(crate) struct History {
    tail: Vec<u8>,
}

impl History {
    /// Forgets the history when `seq` is a keyframe. Call before compressing or decompressing chunk `seq`.
    pub(crate) fn start_chunk(&mut self, seq: u64) {
        if seq.is_multiple_of(KEYFRAME_INTERVAL) {
            self.tail = Vec::new();
        }
    }

    /// The dictionary for the current chunk.
    pub(crate) fn dict(&self) -> &[u8] {
        let mut dict = self.tail.as_slice();
        if dict.starts_with(&DICT_MAGIC) {
            dict = &dict[1..];
        }
        if dict.len() < MIN_DICT { &[] } else { dict }
    }

    /// Appends a chunk's raw bytes, keeping the last [`HISTORY_MAX`].
    pub(crate) fn end_chunk(&mut self, raw: &[u8]) {
        if raw.len() >= HISTORY_MAX {
            self.tail = raw[raw.len() - HISTORY_MAX..].to_vec();
            return;
        }
        let excess = (self.tail.len() + raw.len()).saturating_sub(HISTORY_MAX);
        self.tail.drain(..excess);
        self.tail.extend_from_slice(raw);
        // A session idles between chunks; do not keep more than it needs.
        if self.tail.capacity() > HISTORY_MAX {
            self.tail.shrink_to(HISTORY_MAX);
        }
    }
}

/// The writer's one compression context, reused for every chunk of every session.
pub(crate) struct Compressor {
    cctx: CCtx<'static>,
}

impl Compressor {
    pub(crate) fn new() -> Result<Compressor, RecordingError> {
        let cctx = CCtx::try_create()
            .ok_or_else(|| RecordingError::Compression("cannot allocate a zstd context".into()))?;
        Ok(Compressor { cctx })
    }

    /// Compresses one chunk's raw bytes with the given dictionary (from [`History::dict`]).
    pub(crate) fn compress(&mut self, raw: &[u8], dict: &[u8]) -> Result<Vec<u8>, RecordingError> {
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(raw.len()));
        self.cctx
            .compress_using_dict(&mut out, raw, dict, LEVEL)
            .map_err(|code| {
                RecordingError::Compression(zstd_safe::get_error_name(code).to_owned())
            })?;
        Ok(out)
    }
}

/// A reader's decompression context.
pub(crate) struct Decompressor {
    dctx: DCtx<'static>,
}

impl Decompressor {
    pub(crate) fn new() -> Result<Decompressor, RecordingError> {
        let dctx = DCtx::try_create()
            .ok_or_else(|| RecordingError::Compression("cannot allocate a zstd context".into()))?;
        Ok(Decompressor { dctx })
    }

    /// Decompresses one chunk that claims `raw_len` raw bytes; anything else is an error, never a panic.
    pub(crate) fn decompress(
        &mut self,
        data: &[u8],
        raw_len: u64,
        dict: &[u8],
    ) -> Result<Vec<u8>, RecordingError> {
        let raw_len = usize::try_from(raw_len)
            .ok()
            .filter(|&l| l <= MAX_CHUNK_RAW)
            .ok_or_else(|| RecordingError::Corrupt(format!("chunk claims {raw_len} raw bytes")))?;
        let mut out = Vec::with_capacity(raw_len);
        self.dctx
            .decompress_using_dict(&mut out, data, dict)
            .map_err(|code| {
                RecordingError::Corrupt(format!(
                    "chunk does not decompress: {}",
                    zstd_safe::get_error_name(code)
                ))
            })?;
        if out.len() != raw_len {
            return Err(RecordingError::Corrupt(format!(
                "chunk decompresses to {} bytes, not the {raw_len} it claims",
                out.len()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Small chunks of an interactive terminal stream (a couple of lines each, as one second of typing gives),
    /// which repeat what earlier chunks said.
    fn chunks() -> Vec<Vec<u8>> {
        (0..100)
            .map(|i| {
                format!(
                    "user@host:~/src/project$ ls -l src/module_{}\r\n-rw-r--r-- 1 user staff {} Mar {} file_{}.rs\r\n",
                    i % 7,
                    1000 + i * 37,
                    1 + i % 28,
                    i % 11
                )
                .into_bytes()
            })
            .collect()
    }

    fn compress_all(use_history: bool) -> (Vec<Vec<u8>>, usize) {
        let mut c = Compressor::new().unwrap();
        let mut history = History::default();
        let mut out = Vec::new();
        for (seq, raw) in chunks().iter().enumerate() {
            history.start_chunk(seq as u64);
            let dict = if use_history { history.dict() } else { &[] };
            out.push(c.compress(raw, dict).unwrap());
            history.end_chunk(raw);
        }
        let total = out.iter().map(Vec::len).sum();
        (out, total)
    }

    #[test]
    fn history_round_trips_and_helps() {
        let (compressed, with) = compress_all(true);
        let (_, without) = compress_all(false);
        assert!(
            with * 2 < without,
            "history should at least halve the size: {with} vs {without}"
        );
        let mut d = Decompressor::new().unwrap();
        let mut history = History::default();
        for (seq, (raw, data)) in chunks().iter().zip(&compressed).enumerate() {
            history.start_chunk(seq as u64);
            let out = d
                .decompress(data, raw.len() as u64, history.dict())
                .unwrap();
            assert_eq!(&out, raw);
            history.end_chunk(&out);
        }
    }

    #[test]
    fn history_keeps_the_tail_and_resets_at_keyframes() {
        let mut h = History::default();
        h.start_chunk(1);
        h.end_chunk(&[1; 20_000]);
        h.end_chunk(&[2; 20_000]);
        assert_eq!(h.dict().len(), HISTORY_MAX);
        assert_eq!(h.dict()[HISTORY_MAX - 1], 2);
        assert_eq!(h.dict()[0], 1);
        h.end_chunk(&[3; 40_000]);
        assert!(h.dict().iter().all(|&b| b == 3));
        h.start_chunk(KEYFRAME_INTERVAL);
        assert!(h.dict().is_empty());
    }

    #[test]
    fn dictionary_magic_is_never_a_structured_dictionary() {
        let mut h = History::default();
        let mut raw = DICT_MAGIC.to_vec();
        raw.extend_from_slice(&[0xff; 100]);
        h.end_chunk(&raw);
        assert_eq!(h.dict().len(), 103);
        let mut c = Compressor::new().unwrap();
        let data = c.compress(&raw, h.dict()).unwrap();
        let out = Decompressor::new()
            .unwrap()
            .decompress(&data, raw.len() as u64, h.dict())
            .unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn lying_sizes_and_garbage_are_errors() {
        let mut c = Compressor::new().unwrap();
        let data = c.compress(b"hello hello hello", &[]).unwrap();
        let mut d = Decompressor::new().unwrap();
        assert!(d.decompress(&data, 5, &[]).is_err());
        assert!(d.decompress(&data, 100, &[]).is_err());
        assert!(d.decompress(&data, u64::MAX, &[]).is_err());
        assert!(d.decompress(b"not zstd at all", 10, &[]).is_err());
        assert!(d.decompress(&data[..data.len() - 1], 17, &[]).is_err());
        // The context stays usable after errors.
        assert_eq!(d.decompress(&data, 17, &[]).unwrap(), b"hello hello hello");
    }
}
