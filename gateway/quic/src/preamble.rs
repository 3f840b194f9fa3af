//! Reading a stream's preamble: a sans-io [`PreambleReader`] that buffers never more than the
//! preamble's bound and says what it found, and [`read_preamble`], which feeds it from a stream within
//! the deadline.

use std::future::Future;
use std::time::Duration;

use quinn::RecvStream;
use sallyport_core::quic::{MAX_PREAMBLE_LEN, Preamble};

/// Bytes arriving on a stream (quinn's `RecvStream`; a script in tests).
pub(crate) trait ReadChunk: Send {
    /// Reads into `buf`: `Some(n)` bytes, `None` at the end of the stream, or why it failed.
    fn read_chunk(
        &mut self,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<Option<usize>, String>> + Send;
}

impl ReadChunk for RecvStream {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, String> {
        self.read(buf)
            .await
            .map_err(|error| format!("the stream failed: {error}"))
    }
}

/// The bytes of a preamble so far.
#[derive(Debug, Default)]
pub(crate) struct PreambleReader {
    buf: Vec<u8>,
}

impl PreambleReader {
    /// How many bytes to read next: never more than the preamble's bound is buffered, because
    /// [`Preamble::parse`] decides by then.
    pub(crate) fn want(&self) -> usize {
        (MAX_PREAMBLE_LEN + 1)
            .saturating_sub(self.buf.len())
            .clamp(1, MAX_PREAMBLE_LEN)
    }

    /// Takes bytes read: the preamble with the bytes past it once complete, `None` while more are
    /// needed, or why the stream is refused.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Option<(Preamble, Vec<u8>)>, String> {
        self.buf.extend_from_slice(bytes);
        match Preamble::parse(&self.buf) {
            Ok(Some((preamble, used))) => Ok(Some((
                preamble,
                self.buf.get(used..).unwrap_or_default().to_vec(),
            ))),
            Ok(None) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Reads the preamble within `deadline`. Returns it with the bytes read past it, or why the stream
/// is refused, in words.
pub(crate) async fn read_preamble(
    deadline: Duration,
    recv: &mut impl ReadChunk,
) -> Result<(Preamble, Vec<u8>), String> {
    let read = async {
        let mut reader = PreambleReader::default();
        let mut chunk = [0u8; MAX_PREAMBLE_LEN];
        loop {
            let want = reader.want();
            let n = match recv.read_chunk(&mut chunk[..want]).await? {
                Some(n) => n,
                None => return Err("the stream ended before its preamble".to_owned()),
            };
            if let Some(found) = reader.push(chunk.get(..n).unwrap_or_default())? {
                return Ok(found);
            }
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| "no preamble within the deadline".to_owned())?
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A stream that delivers these chunks, then ends (or, if `hang`, never says more).
    struct Script {
        chunks: VecDeque<Vec<u8>>,
        hang: bool,
        asked: Vec<usize>,
    }

    impl ReadChunk for Script {
        async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, String> {
            self.asked.push(buf.len());
            match self.chunks.pop_front() {
                Some(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.chunks.push_front(chunk[n..].to_vec());
                    }
                    Ok(Some(n))
                }
                None if self.hang => std::future::pending().await,
                None => Ok(None),
            }
        }
    }

    fn script(chunks: Vec<Vec<u8>>, hang: bool) -> Script {
        Script {
            chunks: chunks.into(),
            hang,
            asked: Vec::new(),
        }
    }

    fn terminal(target: &str) -> Vec<u8> {
        Preamble::Terminal {
            target: target.into(),
        }
        .encode()
        .unwrap()
    }

    #[tokio::test]
    async fn a_preamble_split_across_reads_is_found_with_the_bytes_after_it() {
        let mut bytes = terminal("web");
        bytes.extend_from_slice(b"first frame");
        let chunks = bytes.chunks(2).map(<[u8]>::to_vec).collect();
        let mut stream = script(chunks, false);
        let (preamble, rest) = read_preamble(Duration::from_secs(1), &mut stream)
            .await
            .unwrap();
        assert_eq!(
            preamble,
            Preamble::Terminal {
                target: "web".into()
            }
        );
        // What was read past the preamble is handed on (the decoder gets it), nothing is lost.
        assert!(b"first frame".starts_with(&rest), "{rest:?}");
        assert!(
            stream
                .asked
                .iter()
                .all(|&n| (1..=MAX_PREAMBLE_LEN).contains(&n))
        );
    }

    #[tokio::test]
    async fn garbage_is_refused_at_its_first_byte() {
        let mut stream = script(vec![b"GET / HTTP/1.1\r\n".to_vec()], true);
        let refused = read_preamble(Duration::from_secs(1), &mut stream).await;
        assert_eq!(
            refused.unwrap_err(),
            "the stream does not start with the sallyport preamble"
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_is_refused_in_words() {
        let mut stream = script(vec![b"SP".to_vec()], false);
        let refused = read_preamble(Duration::from_secs(1), &mut stream).await;
        assert_eq!(refused.unwrap_err(), "the stream ended before its preamble");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_says_too_little_is_refused_at_the_deadline() {
        let mut stream = script(vec![b"SP\x01".to_vec()], true);
        let started = tokio::time::Instant::now();
        let refused = read_preamble(Duration::from_secs(10), &mut stream).await;
        assert_eq!(refused.unwrap_err(), "no preamble within the deadline");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn the_reader_never_buffers_past_the_bound() {
        let mut reader = PreambleReader::default();
        // `SP`, version 1, kind 1 and a length at the bound: parse needs the whole argument.
        let len = u16::try_from(MAX_PREAMBLE_LEN - 6).unwrap().to_be_bytes();
        let header = [b'S', b'P', 1, 1, len[0], len[1]];
        assert_eq!(reader.push(&header), Ok(None));
        assert_eq!(reader.want(), MAX_PREAMBLE_LEN + 1 - header.len());
        let argument = vec![b'a'; MAX_PREAMBLE_LEN - 6 - 1];
        assert_eq!(reader.push(&argument), Ok(None));
        assert_eq!(reader.want(), 2);
    }
}
