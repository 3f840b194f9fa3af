//! The ledger's entries: what each one says, its binary body (the ledger's parser of stored bytes), how entries are
//! hashed and chained, and the signed checkpoint.
//!
//! - body = `u8 kind | fields`, strings as `u16 BE length | UTF-8`, integers as u64 big-endian, hashes as 32 bytes;
//!   the decoder reads bytes that may have been tampered with: it never panics and refuses trailing bytes.
//! - leaf(seq) = SHA-256("sallyport-ledger-entry-v1" | seq | at_ms | body).
//! - head(seq) = SHA-256(head(seq - 1) | leaf(seq)), head(-1) = SHA-256("sallyport-ledger-v1").
//! - a checkpoint at entry `seq` signs, with Ed25519 and the recording key, "sallyport-checkpoint-v1" | size | head |
//!   at_ms, where size = seq (the entries before it) and head = head(seq - 1). The checkpoint entry itself is chained
//!   like any other, so removing one breaks the chain.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::Hash;
use crate::session::Outcome;

const LEAF_DOMAIN: &[u8] = b"sallyport-ledger-entry-v1";
const START_DOMAIN: &[u8] = b"sallyport-ledger-v1";
const CHECKPOINT_DOMAIN: &[u8] = b"sallyport-checkpoint-v1";

/// Longest text an entry carries (a damage report); longer text is cut at a character boundary.
pub(crate) const MAX_NOTE_BYTES: usize = 1024;

const KIND_START: u8 = 1;
pub(crate) const KIND_CHUNK: u8 = 2;
const KIND_SEAL: u8 = 3;
const KIND_RECOVERED: u8 = 4;
const KIND_DAMAGED: u8 = 5;
pub(crate) const KIND_CHECKPOINT: u8 = 6;
const KIND_RESTART: u8 = 7;
const KIND_BEFORE_LEDGER: u8 = 8;

/// How a session ended, as its seal states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionEnd {
    pub chunk_count: u64,
    pub final_hash: Hash,
    pub outcome: Outcome,
    pub ended_at_ms: u64,
}

/// A signed statement of the ledger's head: the unit of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// How many entries it covers (entries 0 .. size - 1); the checkpoint is entry `size` itself.
    pub size: u64,
    /// The head after entry `size - 1`.
    pub head: [u8; 32],
    /// When it was made, in Unix milliseconds.
    pub at_ms: u64,
    /// The recording public key that signed it.
    pub key: [u8; 32],
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

/// What one entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// A session started; `genesis` commits to the session row's identity fields.
    Start { session: String, genesis: Hash },
    /// A chunk of a session was stored with this chain hash.
    Chunk {
        session: String,
        seq: u64,
        hash: Hash,
    },
    /// The writer sealed a session.
    Seal { session: String, end: SessionEnd },
    /// Crash recovery sealed a session the gateway left open; `unvouched_chunks` of its chunks, the last
    /// `unvouched_ms` of it, were written after the last checkpoint before the crash.
    Recovered {
        session: String,
        end: SessionEnd,
        unvouched_chunks: u64,
        unvouched_ms: u64,
    },
    /// Crash recovery found a session that disagrees with the ledger and left it unsealed.
    Damaged { session: String, reason: String },
    /// A signed checkpoint of every entry before it.
    Checkpoint(Checkpoint),
    /// The gateway started. `vouched` entries were covered by a valid checkpoint; those after them and before this
    /// one were written after the last checkpoint before a crash. `contradicted` when the ledger did not match its
    /// checkpoints.
    Restart { vouched: u64, contradicted: bool },
    /// A session recorded before the ledger existed, as the migration found it.
    BeforeLedger {
        session: String,
        genesis: Hash,
        chunk_count: u64,
        sealed: bool,
    },
}

impl Body {
    /// The session the entry is about, if any.
    pub(crate) fn session(&self) -> Option<&str> {
        match self {
            Body::Start { session, .. }
            | Body::Chunk { session, .. }
            | Body::Seal { session, .. }
            | Body::Recovered { session, .. }
            | Body::Damaged { session, .. }
            | Body::BeforeLedger { session, .. } => Some(session),
            Body::Checkpoint(_) | Body::Restart { .. } => None,
        }
    }

    /// The stored kind number.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Body::Start { .. } => KIND_START,
            Body::Chunk { .. } => KIND_CHUNK,
            Body::Seal { .. } => KIND_SEAL,
            Body::Recovered { .. } => KIND_RECOVERED,
            Body::Damaged { .. } => KIND_DAMAGED,
            Body::Checkpoint(_) => KIND_CHECKPOINT,
            Body::Restart { .. } => KIND_RESTART,
            Body::BeforeLedger { .. } => KIND_BEFORE_LEDGER,
        }
    }

    /// Whether the entry ends a session (and so must be followed by a checkpoint in the same transaction).
    pub(crate) fn ends_session(&self) -> bool {
        matches!(
            self,
            Body::Seal { .. } | Body::Recovered { .. } | Body::Damaged { .. }
        )
    }

    /// The stored bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(self.kind());
        match self {
            Body::Start { session, genesis } => {
                put_str(&mut out, session);
                out.extend_from_slice(genesis);
            }
            Body::Chunk { session, seq, hash } => {
                put_str(&mut out, session);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(hash);
            }
            Body::Seal { session, end } => {
                put_str(&mut out, session);
                put_end(&mut out, end);
            }
            Body::Recovered {
                session,
                end,
                unvouched_chunks,
                unvouched_ms,
            } => {
                put_str(&mut out, session);
                put_end(&mut out, end);
                out.extend_from_slice(&unvouched_chunks.to_be_bytes());
                out.extend_from_slice(&unvouched_ms.to_be_bytes());
            }
            Body::Damaged { session, reason } => {
                put_str(&mut out, session);
                put_str(&mut out, reason);
            }
            Body::Checkpoint(c) => {
                out.extend_from_slice(&c.size.to_be_bytes());
                out.extend_from_slice(&c.head);
                out.extend_from_slice(&c.at_ms.to_be_bytes());
                out.extend_from_slice(&c.key);
                out.extend_from_slice(&c.signature);
            }
            Body::Restart {
                vouched,
                contradicted,
            } => {
                out.extend_from_slice(&vouched.to_be_bytes());
                out.push(u8::from(*contradicted));
            }
            Body::BeforeLedger {
                session,
                genesis,
                chunk_count,
                sealed,
            } => {
                put_str(&mut out, session);
                out.extend_from_slice(genesis);
                out.extend_from_slice(&chunk_count.to_be_bytes());
                out.push(u8::from(*sealed));
            }
        }
        out
    }

    /// Parses stored bytes; `Err` says what is wrong, in words.
    pub fn decode(bytes: &[u8]) -> Result<Body, String> {
        let mut r = Reader(bytes);
        let kind = r.u8()?;
        let body = match kind {
            KIND_START => Body::Start {
                session: r.str()?,
                genesis: r.hash()?,
            },
            KIND_CHUNK => Body::Chunk {
                session: r.str()?,
                seq: r.u64()?,
                hash: r.hash()?,
            },
            KIND_SEAL => Body::Seal {
                session: r.str()?,
                end: r.end()?,
            },
            KIND_RECOVERED => Body::Recovered {
                session: r.str()?,
                end: r.end()?,
                unvouched_chunks: r.u64()?,
                unvouched_ms: r.u64()?,
            },
            KIND_DAMAGED => Body::Damaged {
                session: r.str()?,
                reason: r.str()?,
            },
            KIND_CHECKPOINT => Body::Checkpoint(Checkpoint {
                size: r.u64()?,
                head: r.hash()?,
                at_ms: r.u64()?,
                key: r.array()?,
                signature: r.array()?,
            }),
            KIND_RESTART => Body::Restart {
                vouched: r.u64()?,
                contradicted: r.flag()?,
            },
            KIND_BEFORE_LEDGER => Body::BeforeLedger {
                session: r.str()?,
                genesis: r.hash()?,
                chunk_count: r.u64()?,
                sealed: r.flag()?,
            },
            other => return Err(format!("unknown entry kind {other}")),
        };
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the entry's end", r.0.len()));
        }
        Ok(body)
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let text = crate::event::truncate_utf8(text, MAX_NOTE_BYTES);
    // At most MAX_NOTE_BYTES, so the length fits in u16.
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_end(out: &mut Vec<u8>, end: &SessionEnd) {
    out.extend_from_slice(&end.chunk_count.to_be_bytes());
    out.extend_from_slice(&end.final_hash);
    put_str(out, end.outcome.as_str());
    out.extend_from_slice(&end.ended_at_ms.to_be_bytes());
}

/// A cursor over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "the entry ends early ({} bytes left, {n} needed)",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| "internal length error".to_owned())
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("a flag is {other}, not 0 or 1")),
        }
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn hash(&mut self) -> Result<Hash, String> {
        self.array()
    }

    fn str(&mut self) -> Result<String, String> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        if len > MAX_NOTE_BYTES {
            return Err(format!("a text of {len} bytes is longer than allowed"));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a text is not UTF-8".to_owned())
    }

    fn end(&mut self) -> Result<SessionEnd, String> {
        let chunk_count = self.u64()?;
        let final_hash = self.hash()?;
        let outcome = self.str()?;
        let outcome =
            Outcome::parse(&outcome).ok_or_else(|| format!("unknown outcome {outcome:?}"))?;
        Ok(SessionEnd {
            chunk_count,
            final_hash,
            outcome,
            ended_at_ms: self.u64()?,
        })
    }
}

/// The head before the first entry.
pub(crate) fn start_head() -> Hash {
    Sha256::digest(START_DOMAIN).into()
}

/// The hash of one entry.
pub(crate) fn leaf(seq: u64, at_ms: u64, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(LEAF_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// The head after an entry whose leaf is `leaf`.
pub(crate) fn next_head(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

fn checkpoint_message(size: u64, head: &Hash, at_ms: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    buf.extend_from_slice(CHECKPOINT_DOMAIN);
    buf.extend_from_slice(&size.to_be_bytes());
    buf.extend_from_slice(head);
    buf.extend_from_slice(&at_ms.to_be_bytes());
    buf
}

impl Checkpoint {
    /// Signs the ledger's head after `size` entries.
    pub(crate) fn sign(key: &SigningKey, size: u64, head: Hash, at_ms: u64) -> Checkpoint {
        let signature = key.sign(&checkpoint_message(size, &head, at_ms));
        Checkpoint {
            size,
            head,
            at_ms,
            key: key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }

    /// Whether the signature is `key`'s over this checkpoint's size, head and time.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(
            &checkpoint_message(self.size, &self.head, self.at_ms),
            &signature,
        )
        .is_ok()
    }

    /// The checkpoint as a file an auditor keeps (one JSON line, `sallyport-checkpoint-v1`).
    pub fn to_file(&self) -> String {
        let file = CheckpointFile {
            format: CHECKPOINT_FORMAT.to_owned(),
            size: self.size,
            head: hex::encode(self.head),
            at_ms: self.at_ms,
            key: hex::encode(self.key),
            signature: hex::encode(self.signature),
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&file).unwrap_or_default()
    }

    /// Parses a kept checkpoint (see [`to_file`](Self::to_file)); surrounding whitespace is ignored.
    pub fn from_file(text: &str) -> Result<Checkpoint, String> {
        let file: CheckpointFile = serde_json::from_str(text.trim())
            .map_err(|e| format!("not a Sallyport checkpoint: {e}"))?;
        if file.format != CHECKPOINT_FORMAT {
            return Err(format!("unknown checkpoint format {:?}", file.format));
        }
        fn unhex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
            let bytes = hex::decode(text).map_err(|e| format!("the {what} is not hex: {e}"))?;
            <[u8; N]>::try_from(bytes.as_slice())
                .map_err(|_| format!("the {what} is {} bytes, not {N}", bytes.len()))
        }
        Ok(Checkpoint {
            size: file.size,
            head: unhex(&file.head, "head")?,
            at_ms: file.at_ms,
            key: unhex(&file.key, "key")?,
            signature: unhex(&file.signature, "signature")?,
        })
    }
}

const CHECKPOINT_FORMAT: &str = "sallyport-checkpoint-v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    format: String,
    size: u64,
    head: String,
    at_ms: u64,
    key: String,
    signature: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn end() -> SessionEnd {
        SessionEnd {
            chunk_count: 3,
            final_hash: [7; 32],
            outcome: Outcome::Ended,
            ended_at_ms: 99,
        }
    }

    fn every_kind() -> Vec<Body> {
        let session = "00112233445566778899aabbccddeeff".to_owned();
        vec![
            Body::Start {
                session: session.clone(),
                genesis: [1; 32],
            },
            Body::Chunk {
                session: session.clone(),
                seq: 4,
                hash: [2; 32],
            },
            Body::Seal {
                session: session.clone(),
                end: end(),
            },
            Body::Recovered {
                session: session.clone(),
                end: end(),
                unvouched_chunks: 1,
                unvouched_ms: 640,
            },
            Body::Damaged {
                session: session.clone(),
                reason: "chunk 2 differs".into(),
            },
            Body::Checkpoint(Checkpoint::sign(
                &SigningKey::from_bytes(&[3; 32]),
                5,
                [4; 32],
                1000,
            )),
            Body::Restart {
                vouched: 5,
                contradicted: true,
            },
            Body::BeforeLedger {
                session,
                genesis: [5; 32],
                chunk_count: 9,
                sealed: true,
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_and_refuses_every_truncation_and_trailing_bytes() {
        for body in every_kind() {
            let bytes = body.encode();
            assert_eq!(Body::decode(&bytes).unwrap(), body);
            for cut in 0..bytes.len() {
                assert!(
                    Body::decode(&bytes[..cut]).is_err(),
                    "{body:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Body::decode(&longer).unwrap_err().contains("after"));
        }
        assert!(
            Body::decode(&[99])
                .unwrap_err()
                .contains("unknown entry kind")
        );
        // The fuzz target `ledger` starts from these (each body alone, and all of them as one ledger).
        if std::env::var_os("UPDATE_FUZZ_SEEDS").is_some() {
            let seeds =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/ledger");
            std::fs::create_dir_all(&seeds).unwrap();
            let mut all = Vec::new();
            for (i, body) in every_kind().iter().enumerate() {
                let bytes = body.encode();
                std::fs::write(seeds.join(format!("kind_{}.bin", body.kind())), &bytes).unwrap();
                all.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                all.push(i as u8);
                all.extend_from_slice(&bytes);
            }
            std::fs::write(seeds.join("every_kind.ledger"), all).unwrap();
        }
    }

    #[test]
    fn checkpoints_verify_only_what_was_signed_and_survive_their_file_form() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let c = Checkpoint::sign(&key, 10, [9; 32], 1234);
        assert!(c.signed_by(&key.verifying_key()));
        assert!(!c.signed_by(&SigningKey::from_bytes(&[4; 32]).verifying_key()));
        for changed in [
            Checkpoint {
                size: 11,
                ..c.clone()
            },
            Checkpoint {
                head: [8; 32],
                ..c.clone()
            },
            Checkpoint {
                at_ms: 1235,
                ..c.clone()
            },
        ] {
            assert!(!changed.signed_by(&key.verifying_key()));
        }
        let text = c.to_file();
        assert_eq!(Checkpoint::from_file(&format!(" {text}\n")).unwrap(), c);
        assert!(Checkpoint::from_file("{}").is_err());
        assert!(Checkpoint::from_file(&text.replace("-v1", "-v9")).is_err());
        assert!(Checkpoint::from_file(&text.replace("\"size\"", "\"sizes\"")).is_err());
    }

    #[test]
    fn leaves_depend_on_position_time_and_body() {
        let a = leaf(1, 2, b"x");
        assert_ne!(a, leaf(2, 2, b"x"));
        assert_ne!(a, leaf(1, 3, b"x"));
        assert_ne!(a, leaf(1, 2, b"y"));
        assert_ne!(next_head(&start_head(), &a), next_head(&a, &start_head()));
    }
}
