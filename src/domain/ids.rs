//! Case references, parsed once into the parties they name.
//!
//! `<HOST>-<ORIGIN>-<YYYY>-<serial>`, e.g. `TH-KH-2026-000042`: HOST is where
//! the person was identified, ORIGIN the country of nationality. The
//! envelope schema checks the shape; this type gives the parts meaning.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseRef<'a> {
    text: &'a str,
    host: &'a str,
    origin: &'a str,
}

impl<'a> CaseRef<'a> {
    /// The reference's parties, or `None` when it does not name two.
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.split('-');
        let host = parts.next().filter(|p| !p.is_empty())?;
        let origin = parts.next().filter(|p| !p.is_empty())?;
        Some(Self { text, host, origin })
    }

    /// Where the person was identified (sends the referral).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The person's country of nationality (answers the referral).
    pub fn origin(&self) -> &'a str {
        self.origin
    }

    /// Whether a message between `a` and `b` (either way round) belongs to
    /// this case's two countries.
    pub fn is_between(&self, a: &str, b: &str) -> bool {
        (self.host == a && self.origin == b) || (self.host == b && self.origin == a)
    }

    pub fn as_str(&self) -> &'a str {
        self.text
    }
}

impl fmt::Display for CaseRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_of_a_reference() {
        let c = CaseRef::parse("TH-KH-2026-000042").unwrap();
        assert_eq!((c.host(), c.origin()), ("TH", "KH"));
        assert!(c.is_between("KH", "TH") && c.is_between("TH", "KH"));
        assert!(!c.is_between("KH", "VN"));
        assert!(CaseRef::parse("TH").is_none());
        assert!(CaseRef::parse("-KH-2026").is_none());
    }
}
