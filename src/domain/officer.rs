//! The officer behind an action: an opaque id the case system sends with a
//! local API call (the `On-Behalf-Of` header) so the audit names a person,
//! not only the calling system. Pseudonymous: the gateway keeps exactly
//! what it was sent and learns nothing else about the officer. The charset
//! is narrow on purpose: what is stored and shown can carry no markup,
//! whitespace or control characters, yet fits e-mail addresses, URNs,
//! UUIDs and staff numbers.

/// The longest officer id, in characters (all ASCII, so bytes too).
pub const MAX_LEN: usize = 128;

/// The rule in words, for error details and documentation.
pub const RULE: &str = "1 to 128 characters, each an ASCII letter, a digit or one of . _ : @ + - /";

/// The rule as a regular expression (the OpenAPI parameter's pattern).
pub const PATTERN: &str = "^[A-Za-z0-9._:@+/-]{1,128}$";

/// A well-formed officer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficerId(String);

/// Why a value is not an officer id. The messages never repeat the value:
/// a malformed id may be a person's name typed in the wrong field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfficerError {
    #[error("the officer id is empty")]
    Empty,
    #[error("the officer id is {len} characters long; at most {MAX_LEN} are allowed")]
    TooLong { len: usize },
    /// `position` counts bytes from 1, which for any allowed prefix is
    /// also the character's position.
    #[error("character {position} of the officer id is not allowed")]
    BadCharacter { position: usize },
    #[error("several officer ids were sent; send one")]
    Several,
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:@+-/".contains(&b)
}

impl OfficerId {
    /// Parses raw bytes (a header value need not be UTF-8).
    pub fn parse(raw: &[u8]) -> Result<Self, OfficerError> {
        if raw.is_empty() {
            return Err(OfficerError::Empty);
        }
        if let Some(i) = raw.iter().position(|b| !allowed(*b)) {
            return Err(OfficerError::BadCharacter { position: i + 1 });
        }
        if raw.len() > MAX_LEN {
            return Err(OfficerError::TooLong { len: raw.len() });
        }
        // Every allowed byte is ASCII.
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_charset_up_to_128() {
        for ok in [
            "officer-17",
            "a",
            "m.sok@mosvy.gov.kh",
            "urn:kh:staff:0042",
            "01936f3e-5b7a-7c2d-9a61-3f0e8d2b4c11",
            "unit/3+night_shift",
        ] {
            assert_eq!(OfficerId::parse(ok.as_bytes()).unwrap().as_str(), ok);
        }
        assert!(OfficerId::parse("x".repeat(128).as_bytes()).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_odd_characters() {
        assert_eq!(OfficerId::parse(b""), Err(OfficerError::Empty));
        assert_eq!(
            OfficerId::parse("x".repeat(129).as_bytes()),
            Err(OfficerError::TooLong { len: 129 })
        );
        for (bad, position) in [
            ("two words", 4),
            ("tab\there", 4),
            ("nul\0", 4),
            ("Test Officer", 5),
            ("<script>", 1),
            ("\"q\"", 1),
            ("សុខ", 1),
            ("comma,", 6),
        ] {
            assert_eq!(
                OfficerId::parse(bad.as_bytes()),
                Err(OfficerError::BadCharacter { position }),
                "{bad:?}"
            );
        }
        // The message names where, never what.
        let e = OfficerId::parse(b"Test Officer").unwrap_err().to_string();
        assert!(!e.contains("Test"), "{e}");
    }

    #[test]
    fn the_pattern_says_what_parse_does() {
        assert_eq!(PATTERN, "^[A-Za-z0-9._:@+/-]{1,128}$");
        for b in 0u8..=255 {
            let expected = b.is_ascii_alphanumeric() || b"._:@+/-".contains(&b);
            assert_eq!(OfficerId::parse(&[b]).is_ok(), expected, "byte {b}");
        }
    }
}
