//! Why a bundle does not verify: unusable input, or the first broken part
//! with a stable code.

/// Why a bundle does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not something that can be judged: not a bundle, an unknown
    /// version, a country whose CA was not given.
    #[error("{0}")]
    Unusable(String),
    /// The first part that does not hold, with a stable code.
    #[error("{part}: {reason} ({code})")]
    Broken {
        part: String,
        code: &'static str,
        reason: String,
    },
}

pub(super) fn broken(
    part: impl Into<String>,
    code: &'static str,
    reason: impl Into<String>,
) -> VerifyError {
    VerifyError::Broken {
        part: part.into(),
        code,
        reason: reason.into(),
    }
}
