//! The shared cluster secret and the keys derived from it.
//!
//! Owns: loading and validating the secret, and deriving one independent sub-key per
//! use with HKDF-SHA256 (the Noise pre-shared key for TCP, the AEAD key for gossip
//! datagrams), so no key is ever used for two purposes.
//!
//! Does not own: what the keys protect (`handshake`, `seal`). The raw secret is not
//! kept after derivation; the derived keys are zeroed on drop and never printed.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Shortest accepted secret, in bytes after trimming whitespace.
///
/// 16 bytes (128 bits) of randomness is the floor for a symmetric key; a shorter
/// secret is almost certainly a placeholder like "changeme" and would let anyone who
/// guesses it join the cluster.
pub const SECRET_MIN_BYTES: usize = 16;

/// Largest secret file read, in bytes.
///
/// A secret is a line of text; the bound stops a misconfigured path (a log file, a
/// device) from being read into memory whole.
pub const SECRET_FILE_MAX_BYTES: u64 = 64 * 1024;

/// Length of every derived key: 256-bit keys for ChaCha20-Poly1305 and the Noise PSK.
pub(crate) const KEY_BYTES: usize = 32;

/// HKDF salt: binds derivations to geoul so the same secret used elsewhere yields
/// unrelated keys.
const HKDF_SALT: &[u8] = b"geoul cluster secret v1";
/// HKDF info for the Noise pre-shared key.
const NOISE_PSK_INFO: &[u8] = b"geoul/v1/noise-psk";
/// HKDF info for the gossip datagram key.
const GOSSIP_KEY_INFO: &[u8] = b"geoul/v1/gossip-seal";

/// Why a cluster secret was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret is shorter than [`SECRET_MIN_BYTES`].
    #[error(
        "cluster secret is too short: {len} bytes after trimming whitespace, need at least {min}"
    )]
    TooShort {
        /// Length after trimming.
        len: usize,
        /// [`SECRET_MIN_BYTES`].
        min: usize,
    },
    /// The secret file could not be read.
    #[error("cannot read cluster secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The secret file is larger than [`SECRET_FILE_MAX_BYTES`].
    #[error("cluster secret file {path} is larger than {max} bytes; is this the right file?")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// [`SECRET_FILE_MAX_BYTES`].
        max: u64,
    },
    /// The secret file holds too short a secret.
    #[error("cluster secret file {path} holds {len} bytes after trimming whitespace, need at least {min}")]
    FileTooShort {
        /// The file.
        path: PathBuf,
        /// Length after trimming.
        len: usize,
        /// [`SECRET_MIN_BYTES`].
        min: usize,
    },
}

/// The secret every node of a cluster (and every trusted CLI) shares.
///
/// Holds only derived keys. `Debug` prints `ClusterSecret(<redacted>)`.
#[derive(Clone)]
pub struct ClusterSecret {
    noise_psk: Zeroizing<[u8; KEY_BYTES]>,
    gossip_key: Zeroizing<[u8; KEY_BYTES]>,
}

impl ClusterSecret {
    /// Builds the secret from raw bytes; surrounding ASCII whitespace (such as the
    /// newline an editor leaves) is ignored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < SECRET_MIN_BYTES {
            return Err(SecretError::TooShort {
                len: trimmed.len(),
                min: SECRET_MIN_BYTES,
            });
        }
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), trimmed);
        Ok(Self {
            noise_psk: derive(&hkdf, NOISE_PSK_INFO),
            gossip_key: derive(&hkdf, GOSSIP_KEY_INFO),
        })
    }

    /// Reads the secret from a file (at most [`SECRET_FILE_MAX_BYTES`]).
    ///
    /// On Unix, warns if the file is readable by group or others.
    pub fn load_file(path: &Path) -> Result<Self, SecretError> {
        let read_err = |source| SecretError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        warn_if_shared(path, &file);
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(SECRET_FILE_MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > SECRET_FILE_MAX_BYTES {
            return Err(SecretError::FileTooLarge {
                path: path.to_owned(),
                max: SECRET_FILE_MAX_BYTES,
            });
        }
        Self::from_bytes(&bytes).map_err(|err| match err {
            SecretError::TooShort { len, min } => SecretError::FileTooShort {
                path: path.to_owned(),
                len,
                min,
            },
            other => other,
        })
    }

    /// The Noise pre-shared key.
    pub(crate) fn noise_psk(&self) -> &[u8; KEY_BYTES] {
        &self.noise_psk
    }

    /// The gossip datagram key.
    pub(crate) fn gossip_key(&self) -> &[u8; KEY_BYTES] {
        &self.gossip_key
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

fn derive(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Zeroizing<[u8; KEY_BYTES]> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    // HKDF-SHA256 can expand up to 255 * 32 bytes; 32 is always valid.
    hkdf.expand(info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "cluster secret file is readable by group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _file: &std::fs::File) {}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"0123456789abcdef-cluster";

    #[test]
    fn whitespace_is_trimmed() {
        let a = ClusterSecret::from_bytes(GOOD).expect("long enough");
        let b = ClusterSecret::from_bytes(b"  0123456789abcdef-cluster\n").expect("long enough");
        assert_eq!(*a.noise_psk(), *b.noise_psk());
    }

    #[test]
    fn short_secret_says_why() {
        let err = ClusterSecret::from_bytes(b"  changeme \n").expect_err("too short");
        assert!(matches!(err, SecretError::TooShort { len: 8, min: 16 }));
        assert!(err.to_string().contains("at least 16"));
    }

    #[test]
    fn sub_keys_are_distinct_and_depend_on_secret() {
        let a = ClusterSecret::from_bytes(GOOD).expect("long enough");
        let b = ClusterSecret::from_bytes(b"another-secret-of-enough-length").expect("long enough");
        assert_ne!(*a.noise_psk(), *a.gossip_key());
        assert_ne!(*a.noise_psk(), *b.noise_psk());
    }

    #[test]
    fn debug_is_redacted() {
        let s = ClusterSecret::from_bytes(GOOD).expect("long enough");
        assert_eq!(format!("{s:?}"), "ClusterSecret(<redacted>)");
    }

    #[test]
    fn load_file_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing");
        let err = ClusterSecret::load_file(&missing).expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");

        let short = dir.path().join("short");
        std::fs::write(&short, b"tiny\n").expect("write");
        let err = ClusterSecret::load_file(&short).expect_err("short secret");
        assert!(
            matches!(err, SecretError::FileTooShort { len: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("short"), "{err}");

        let good = dir.path().join("good");
        std::fs::write(&good, GOOD).expect("write");
        let loaded = ClusterSecret::load_file(&good).expect("good secret");
        let direct = ClusterSecret::from_bytes(GOOD).expect("good secret");
        assert_eq!(*loaded.gossip_key(), *direct.gossip_key());
    }

    #[test]
    fn load_file_refuses_huge_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; SECRET_FILE_MAX_BYTES as usize + 1]).expect("write");
        let err = ClusterSecret::load_file(&big).expect_err("too large");
        assert!(matches!(err, SecretError::FileTooLarge { .. }), "{err}");
    }
}
