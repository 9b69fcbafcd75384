//! Opaque bearer tokens: generation from the OS CSPRNG, their text form, and
//! the hash that is all the server ever stores.
//!
//! Owns: [`Token`], [`TokenKind`], [`TokenError`], [`TOKEN_BYTES`]. Does not
//! own: what a token grants (`service`).
//!
//! A token is 256 random bits from the operating system (`getrandom`), shown
//! as `gs_` (session), `gr_` (refresh) or `gt_` (server ticket) followed by 43
//! base64url characters. The server stores SHA-256 of the random bytes, never
//! the token: someone who reads a node's disk or a table dump cannot use what
//! they read. A fast hash is right here (unlike for passwords): the input is
//! 256 uniformly random bits, so there is nothing to guess.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Random bytes per token.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token's text: a 3-byte prefix and 43 base64url characters.
pub const TOKEN_TEXT_LEN: usize = 3 + 43;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A session (validated on every server move).
    Session,
    /// A refresh token (rotates on every use).
    Refresh,
    /// A single-use server ticket.
    Ticket,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Session => "gs_",
            Self::Refresh => "gr_",
            Self::Ticket => "gt_",
        }
    }

    /// The first byte of the stored key, so kinds never collide.
    pub fn key_tag(self) -> u8 {
        match self {
            Self::Session => b's',
            Self::Refresh => b'r',
            Self::Ticket => b't',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Session => "session token",
            Self::Refresh => "refresh token",
            Self::Ticket => "server ticket",
        }
    }
}

/// Why a token text is refused (before any lookup).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Wrong length.
    #[error("malformed {kind}: expected {TOKEN_TEXT_LEN} characters, got {len}")]
    Length {
        /// The expected kind.
        kind: &'static str,
        /// The length received, in bytes.
        len: usize,
    },
    /// Wrong prefix (e.g. a refresh token given where a session is expected).
    #[error("malformed {kind}: it must start with {prefix:?}")]
    Prefix {
        /// The expected kind.
        kind: &'static str,
        /// Its prefix.
        prefix: &'static str,
    },
    /// Not base64url.
    #[error("malformed {kind}: not base64url after the prefix")]
    Encoding {
        /// The expected kind.
        kind: &'static str,
    },
    /// The OS random source failed.
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// A token's random bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    kind: TokenKind,
    bytes: [u8; TOKEN_BYTES],
}

impl Token {
    /// A new token from the OS CSPRNG.
    pub fn generate(kind: TokenKind) -> Result<Self, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(Self { kind, bytes })
    }

    /// Parses a token of `kind` from its text; bounded work on any input.
    pub fn parse(kind: TokenKind, text: &str) -> Result<Self, TokenError> {
        if text.len() != TOKEN_TEXT_LEN {
            return Err(TokenError::Length {
                kind: kind.name(),
                len: text.len(),
            });
        }
        let Some(body) = text.strip_prefix(kind.prefix()) else {
            return Err(TokenError::Prefix {
                kind: kind.name(),
                prefix: kind.prefix(),
            });
        };
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(body, &mut bytes) {
            Ok(TOKEN_BYTES) => Ok(Self { kind, bytes }),
            _ => Err(TokenError::Encoding { kind: kind.name() }),
        }
    }

    /// The text handed to the client.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(TOKEN_TEXT_LEN);
        s.push_str(self.kind.prefix());
        URL_SAFE_NO_PAD.encode_string(self.bytes, &mut s);
        s
    }

    /// The key the server stores it under: the kind's tag and SHA-256 of the
    /// random bytes.
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(33);
        key.push(self.kind.key_tag());
        key.extend_from_slice(&Sha256::digest(self.bytes));
        key
    }

    /// The kind.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?}, ..)", self.kind)
    }
}

/// 128 random bits as 32 hex characters (family ids).
pub fn random_id() -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_round_trip_and_are_distinct() {
        let a = Token::generate(TokenKind::Session).expect("random");
        let b = Token::generate(TokenKind::Session).expect("random");
        assert_ne!(a, b);
        assert_ne!(a.key(), b.key());
        let text = a.text();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        assert!(text.starts_with("gs_"));
        assert_eq!(Token::parse(TokenKind::Session, &text), Ok(a.clone()));
        assert_eq!(a.key().len(), 33);
        assert_eq!(a.key()[0], b's');
        assert!(!format!("{a:?}").contains(&text[3..]));
    }

    #[test]
    fn the_stored_key_is_not_the_token() {
        let t = Token::generate(TokenKind::Refresh).expect("random");
        let key = t.key();
        assert!(!key.windows(8).any(|w| t.bytes.windows(8).any(|x| x == w)));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let s = Token::generate(TokenKind::Session).expect("random").text();
        let err = Token::parse(TokenKind::Refresh, &s).expect_err("kind");
        assert!(err.to_string().contains("must start with \"gr_\""), "{err}");
        let err = Token::parse(TokenKind::Session, "gs_abc").expect_err("short");
        assert!(err.to_string().contains("got 6"), "{err}");
        let bad = format!("gs_{}", "!".repeat(43));
        assert_eq!(
            Token::parse(TokenKind::Session, &bad),
            Err(TokenError::Encoding {
                kind: "session token"
            })
        );
        // Multi-byte characters of the right byte length.
        let uni = format!("gs_{}é", "A".repeat(41));
        assert!(Token::parse(TokenKind::Session, &uni).is_err());
    }

    #[test]
    fn ids_are_128_bits_of_hex() {
        let id = random_id().expect("random");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_id().expect("random"));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panicking(text in ".{0,80}") {
            for kind in [TokenKind::Session, TokenKind::Refresh, TokenKind::Ticket] {
                if let Ok(t) = Token::parse(kind, &text) {
                    prop_assert_eq!(t.text(), text.clone());
                }
            }
        }

        #[test]
        fn random_bytes_round_trip(bytes in prop::array::uniform32(any::<u8>())) {
            let t = Token { kind: TokenKind::Ticket, bytes };
            prop_assert_eq!(Token::parse(TokenKind::Ticket, &t.text()), Ok(t));
        }
    }
}
