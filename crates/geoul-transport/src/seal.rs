//! Sealing of gossip datagrams with the cluster secret.
//!
//! Owns: the sealed datagram layout and its authenticated encryption.
//!
//! ```text
//! ["GEOD"][u8 version][24-byte random nonce][ciphertext][16-byte Poly1305 tag]
//! \___ header, bound as AAD ___/
//! ```
//!
//! XChaCha20-Poly1305's 192-bit nonce is large enough to pick at random for every
//! datagram with no coordination and no realistic chance of reuse, which is what a
//! stateless UDP sender needs. Nonces come from the thread-local CSPRNG (seeded from
//! the OS), not from the transport's seeded RNG: they do not affect behaviour, and
//! they must never be predictable or repeat across restarts.
//!
//! Does not own: the UDP socket, gossip encoding, or replay protection (membership
//! messages carry incarnation numbers and are idempotent, so a replay is harmless).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::secret::ClusterSecret;

/// Identifies a sealed geoul datagram.
const DATAGRAM_MAGIC: [u8; 4] = *b"GEOD";
/// Version of the sealed datagram layout; bump on any change.
const DATAGRAM_VERSION: u8 = 1;
const HEADER_BYTES: usize = DATAGRAM_MAGIC.len() + 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Bytes a sealed datagram adds to its plaintext: header (5) + nonce (24) + tag (16).
pub const DATAGRAM_OVERHEAD: usize = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;

/// Why a datagram could not be opened. Any of these means "drop it".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Too short to hold the header, nonce and tag.
    #[error("datagram of {len} bytes is shorter than the {min}-byte sealing overhead")]
    TooShort {
        /// Received length.
        len: usize,
        /// [`DATAGRAM_OVERHEAD`].
        min: usize,
    },
    /// Does not start with the geoul datagram magic.
    #[error("datagram has bad magic: not a sealed geoul datagram")]
    BadMagic,
    /// Sealed by another layout version.
    #[error("datagram layout version {theirs} is not supported (this side speaks {ours})")]
    UnsupportedVersion {
        /// Version in the datagram.
        theirs: u8,
        /// Our version.
        ours: u8,
    },
    /// Authentication failed: another cluster secret, or the bytes were altered.
    #[error("datagram failed authentication (other cluster secret or tampered)")]
    Authentication,
}

/// Seals and opens gossip datagrams with the key derived from the cluster secret.
pub struct DatagramSeal {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for DatagramSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatagramSeal(<redacted>)")
    }
}

impl DatagramSeal {
    /// A seal keyed by `secret`'s gossip sub-key.
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(secret.gossip_key().into()),
        }
    }

    /// Encrypts and authenticates `plaintext`; the result is
    /// `plaintext.len() + DATAGRAM_OVERHEAD` bytes.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + DATAGRAM_OVERHEAD);
        out.extend_from_slice(&DATAGRAM_MAGIC);
        out.push(DATAGRAM_VERSION);
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let (header, rest) = out.split_at_mut(HEADER_BYTES);
        let body = &mut rest[NONCE_BYTES..];
        // Encryption fails only for messages over 256 GiB; datagrams are < 64 KiB.
        let tag = self
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), header, body)
            .expect("datagram plaintext is far below the XChaCha20 length limit");
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len(), plaintext.len() + DATAGRAM_OVERHEAD);
        out
    }

    /// Verifies and decrypts a datagram produced by [`seal`](Self::seal) with the same
    /// cluster secret.
    pub fn open(&self, datagram: &[u8]) -> Result<Vec<u8>, DatagramError> {
        if datagram.len() < DATAGRAM_OVERHEAD {
            return Err(DatagramError::TooShort {
                len: datagram.len(),
                min: DATAGRAM_OVERHEAD,
            });
        }
        let (header, rest) = datagram.split_at(HEADER_BYTES);
        if header[..DATAGRAM_MAGIC.len()] != DATAGRAM_MAGIC {
            return Err(DatagramError::BadMagic);
        }
        let version = header[DATAGRAM_MAGIC.len()];
        if version != DATAGRAM_VERSION {
            return Err(DatagramError::UnsupportedVersion {
                theirs: version,
                ours: DATAGRAM_VERSION,
            });
        }
        let (nonce, sealed) = rest.split_at(NONCE_BYTES);
        let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_BYTES);
        let mut plaintext = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                XNonce::from_slice(nonce),
                header,
                &mut plaintext,
                Tag::from_slice(tag),
            )
            .map_err(|_| DatagramError::Authentication)?;
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(secret: &[u8]) -> DatagramSeal {
        DatagramSeal::new(&ClusterSecret::from_bytes(secret).expect("long enough"))
    }

    #[test]
    fn round_trip() {
        let s = seal(b"cluster-secret-number-one");
        for msg in [&b""[..], b"ping", &[7u8; 1400]] {
            let sealed = s.seal(msg);
            assert_eq!(sealed.len(), msg.len() + DATAGRAM_OVERHEAD);
            assert_eq!(s.open(&sealed).expect("same key"), msg);
        }
    }

    #[test]
    fn nonces_differ() {
        let s = seal(b"cluster-secret-number-one");
        assert_ne!(s.seal(b"same"), s.seal(b"same"));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = seal(b"cluster-secret-number-one").seal(b"hello");
        assert_eq!(
            seal(b"cluster-secret-number-two").open(&sealed),
            Err(DatagramError::Authentication)
        );
    }

    #[test]
    fn truncated_fails() {
        let s = seal(b"cluster-secret-number-one");
        let sealed = s.seal(b"hello");
        assert_eq!(
            s.open(&sealed[..DATAGRAM_OVERHEAD - 1]),
            Err(DatagramError::TooShort {
                len: DATAGRAM_OVERHEAD - 1,
                min: DATAGRAM_OVERHEAD
            })
        );
        assert_eq!(
            s.open(&sealed[..sealed.len() - 1]),
            Err(DatagramError::Authentication)
        );
    }

    #[test]
    fn tampering_anywhere_fails() {
        let s = seal(b"cluster-secret-number-one");
        let sealed = s.seal(b"hello gossip");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = s.open(&bad).expect_err("tampered byte {i}");
            match i {
                0..=3 => assert_eq!(err, DatagramError::BadMagic),
                4 => assert!(matches!(err, DatagramError::UnsupportedVersion { .. })),
                _ => assert_eq!(err, DatagramError::Authentication),
            }
        }
    }

    #[test]
    fn garbage_fails() {
        let s = seal(b"cluster-secret-number-one");
        assert!(s.open(&[0u8; 100]).is_err());
        assert!(s.open(b"").is_err());
    }
}
