//! What a username and a password may be.
//!
//! Owns: [`Username`] (the normalized account key) and [`Password`] (the
//! normalized secret handed to the hasher), their bounds and their errors.
//! Does not own: hashing (`password`) or storage (`service`).
//!
//! Usernames are ASCII (`a-z 0-9 _ . -`, 3–32 bytes, case-insensitive,
//! stored lowercase) so that two names that look alike are the same name:
//! Unicode homoglyphs (`аna` with a Cyrillic `а`) and invisible characters
//! would otherwise give an impersonator a second account that reads the same.
//! Passwords may be any Unicode text (8–256 characters, at most 1 KiB), NFKC
//! normalized so that the same password typed on two keyboards that compose
//! characters differently verifies; control characters are refused.

use unicode_normalization::UnicodeNormalization;

/// Shortest username, in bytes.
pub const USERNAME_MIN: usize = 3;
/// Longest username, in bytes.
pub const USERNAME_MAX: usize = 32;
/// Shortest password, in characters (NIST SP 800-63B's minimum).
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password, in characters.
pub const PASSWORD_MAX_CHARS: usize = 256;
/// Longest password, in bytes (bounds the hasher's input whatever the script).
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// Why a name or password is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Too short or too long.
    #[error("username must be {USERNAME_MIN}-{USERNAME_MAX} characters, got {0}")]
    UsernameLength(usize),
    /// A character outside the allowed set.
    #[error(
        "username may contain only letters a-z, digits, '_', '.' and '-' \
         (found {0:?} at character {1})"
    )]
    UsernameChar(char, usize),
    /// Must start with a letter or digit.
    #[error("username must start with a letter or a digit")]
    UsernameStart,
    /// Too short.
    #[error("password must be at least {PASSWORD_MIN_CHARS} characters, got {0}")]
    PasswordShort(usize),
    /// Too long.
    #[error(
        "password must be at most {PASSWORD_MAX_CHARS} characters and {PASSWORD_MAX_BYTES} bytes"
    )]
    PasswordLong,
    /// A control character (newline, NUL, …).
    #[error("password must not contain control characters (found U+{0:04X})")]
    PasswordControl(u32),
}

/// A valid, normalized (lowercase) username.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Checks and normalizes `raw`.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let chars = raw.chars().count();
        if !(USERNAME_MIN..=USERNAME_MAX).contains(&chars) {
            return Err(NameError::UsernameLength(chars));
        }
        for (i, c) in raw.chars().enumerate() {
            let ok = c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if !ok {
                return Err(NameError::UsernameChar(c, i + 1));
            }
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(NameError::UsernameStart);
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid password, NFKC-normalized. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Checks and normalizes `raw`.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.len() > PASSWORD_MAX_BYTES * 4 {
            // Refuse before normalizing: NFKC of a huge input costs time.
            return Err(NameError::PasswordLong);
        }
        let normalized: String = raw.nfkc().collect();
        if let Some(c) = normalized.chars().find(|c| c.is_control()) {
            return Err(NameError::PasswordControl(u32::from(c)));
        }
        let chars = normalized.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(NameError::PasswordShort(chars));
        }
        if chars > PASSWORD_MAX_CHARS || normalized.len() > PASSWORD_MAX_BYTES {
            return Err(NameError::PasswordLong);
        }
        Ok(Self(normalized))
    }

    /// The normalized bytes given to the hasher.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_ascii_lowercase_and_bounded() {
        assert_eq!(Username::parse("Ana_1").map(|u| u.0), Ok("ana_1".into()));
        assert_eq!(Username::parse("ab"), Err(NameError::UsernameLength(2)));
        assert_eq!(
            Username::parse(&"a".repeat(33)),
            Err(NameError::UsernameLength(33))
        );
        assert_eq!(Username::parse(".ana"), Err(NameError::UsernameStart));
        assert_eq!(
            Username::parse("an a"),
            Err(NameError::UsernameChar(' ', 3))
        );
    }

    #[test]
    fn lookalike_and_invisible_unicode_is_refused_with_its_position() {
        // Cyrillic 'а' (U+0430) looks like Latin 'a'.
        let err = Username::parse("\u{430}na").expect_err("homoglyph");
        assert_eq!(err, NameError::UsernameChar('\u{430}', 1));
        assert!(err.to_string().contains("character 1"), "{err}");
        // Zero-width joiner.
        assert_eq!(
            Username::parse("an\u{200d}a"),
            Err(NameError::UsernameChar('\u{200d}', 3))
        );
        // A long multi-byte name counts characters, not bytes.
        assert_eq!(
            Username::parse(&"é".repeat(40)),
            Err(NameError::UsernameLength(40))
        );
    }

    #[test]
    fn passwords_are_normalized_bounded_and_never_printed() {
        // "é" composed vs decomposed: the same password.
        let composed = Password::parse("caf\u{e9}-secret").expect("ok");
        let decomposed = Password::parse("cafe\u{301}-secret").expect("ok");
        assert_eq!(composed, decomposed);
        assert_eq!(Password::parse("short"), Err(NameError::PasswordShort(5)));
        assert_eq!(
            Password::parse(&"x".repeat(257)),
            Err(NameError::PasswordLong)
        );
        // Bounds apply after normalization: U+FDFA is one character that
        // NFKC expands to 18.
        assert_eq!(
            Password::parse(&"\u{fdfa}".repeat(15)),
            Err(NameError::PasswordLong)
        );
        assert!(Password::parse(&"😀".repeat(256)).is_ok());
        assert_eq!(
            Password::parse("good password\n"),
            Err(NameError::PasswordControl(0x0a))
        );
        assert_eq!(
            Password::parse("nul\0in the middle"),
            Err(NameError::PasswordControl(0))
        );
        assert_eq!(
            Password::parse(&"x".repeat(100_000)),
            Err(NameError::PasswordLong)
        );
        let p = Password::parse("hunter2hunter2").expect("ok");
        assert_eq!(format!("{p:?}"), "Password(..)");
        // Any script is fine.
        assert!(Password::parse("비밀번호는길어야해").is_ok());
    }
}
