//! The hash chain and the seal that make a recording tamper-evident.
//!
//! - genesis = SHA-256("sallyport-genesis-v1" | id | user | target | target_addr | protocol | client_addr |
//!   started_at_ms), where strings are `u32 BE length | bytes` and integers are u64 big-endian.
//! - hash(seq) = SHA-256(prev | seq | t_start_ms | t_end_ms | raw_len | data), prev being genesis for seq 0 and
//!   hash(seq - 1) otherwise; `data` is the compressed chunk as stored.
//! - seal = Ed25519 signature over "sallyport-seal-v1" | id | final hash | chunk_count | outcome | ended_at_ms, the
//!   final hash being the last chunk's hash (genesis when there are no chunks).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::session::{Identity, Outcome};

/// A SHA-256 digest.
pub(crate) type Hash = [u8; 32];

const GENESIS_DOMAIN: &[u8] = b"sallyport-genesis-v1";
const SEAL_DOMAIN: &[u8] = b"sallyport-seal-v1";

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Lengths beyond u32 cannot occur for fields that fit in SQLite rows; saturate rather than wrap.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The chain's start: a digest of the session row's immutable fields.
pub(crate) fn genesis(identity: &Identity<'_>) -> Hash {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(GENESIS_DOMAIN);
    for field in [
        identity.id,
        identity.user,
        identity.target,
        identity.target_addr,
        identity.protocol,
        identity.client_addr,
    ] {
        put_str(&mut buf, field);
    }
    buf.extend_from_slice(&identity.started_at_ms.to_be_bytes());
    Sha256::digest(&buf).into()
}

/// The stored fields of one chunk that the chain covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkFields<'a> {
    pub seq: u64,
    pub t_start_ms: u64,
    pub t_end_ms: u64,
    pub raw_len: u64,
    pub data: &'a [u8],
}

/// The chain hash of a chunk that follows `prev`.
pub(crate) fn chunk_hash(prev: &Hash, chunk: &ChunkFields<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(chunk.seq.to_be_bytes());
    h.update(chunk.t_start_ms.to_be_bytes());
    h.update(chunk.t_end_ms.to_be_bytes());
    h.update(chunk.raw_len.to_be_bytes());
    h.update(chunk.data);
    h.finalize().into()
}

/// What a seal covers besides the chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealFields<'a> {
    pub id: &'a str,
    pub final_hash: &'a Hash,
    pub chunk_count: u64,
    pub outcome: Outcome,
    pub ended_at_ms: u64,
}

fn seal_message(fields: &SealFields<'_>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(SEAL_DOMAIN);
    put_str(&mut buf, fields.id);
    buf.extend_from_slice(fields.final_hash);
    buf.extend_from_slice(&fields.chunk_count.to_be_bytes());
    put_str(&mut buf, fields.outcome.as_str());
    buf.extend_from_slice(&fields.ended_at_ms.to_be_bytes());
    buf
}

/// A seal as stored in the session row.
#[derive(Debug, Clone)]
pub(crate) struct Seal {
    pub hash: Hash,
    pub signature: [u8; 64],
    pub public_key: [u8; 32],
}

/// Signs a session's end.
pub(crate) fn seal(key: &SigningKey, fields: &SealFields<'_>) -> Seal {
    let signature = key.sign(&seal_message(fields));
    Seal {
        hash: *fields.final_hash,
        signature: signature.to_bytes(),
        public_key: key.verifying_key().to_bytes(),
    }
}

/// Checks a stored signature over a session's end.
pub(crate) fn check_signature(
    key: &VerifyingKey,
    fields: &SealFields<'_>,
    signature: &[u8; 64],
) -> bool {
    let signature = Signature::from_bytes(signature);
    key.verify_strict(&seal_message(fields), &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str) -> Identity<'_> {
        Identity {
            id: "00112233445566778899aabbccddeeff",
            user,
            target: "db1",
            target_addr: "10.0.0.5:22",
            protocol: "ssh",
            client_addr: "192.0.2.7:50000",
            started_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn genesis_depends_on_every_field_without_ambiguity() {
        let a = genesis(&identity("alice"));
        assert_ne!(a, genesis(&identity("alicf")));
        // Moving a character between adjacent fields changes the digest (length prefixes).
        let mut moved = identity("alicedb1");
        moved.target = "";
        let mut orig = identity("alice");
        orig.target = "db1";
        assert_ne!(genesis(&moved), genesis(&orig));
        let mut later = identity("alice");
        later.started_at_ms += 1;
        assert_ne!(a, genesis(&later));
    }

    #[test]
    fn seal_verifies_only_what_was_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let hash = [1; 32];
        let fields = SealFields {
            id: "abc",
            final_hash: &hash,
            chunk_count: 3,
            outcome: Outcome::Ended,
            ended_at_ms: 5,
        };
        let s = seal(&key, &fields);
        assert_eq!(s.public_key, key.verifying_key().to_bytes());
        assert!(check_signature(&key.verifying_key(), &fields, &s.signature));
        let changed = SealFields {
            chunk_count: 2,
            ..fields
        };
        assert!(!check_signature(
            &key.verifying_key(),
            &changed,
            &s.signature
        ));
        let changed = SealFields {
            outcome: Outcome::Terminated,
            ..fields
        };
        assert!(!check_signature(
            &key.verifying_key(),
            &changed,
            &s.signature
        ));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!check_signature(
            &other.verifying_key(),
            &fields,
            &s.signature
        ));
    }
}
