//! Who may do what on the local API: the roles a token or client
//! certificate carries, and the authenticated caller. Which route each role
//! may call is declared beside the route (HTTP layer); the roles are here so
//! configuration and the application services can name them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The focal point's case-management system: full case data.
    Caseworker,
    /// Consular staff: case state and timeline, no personal data.
    Embassy,
    /// Queues, peers and timers; no personal data.
    Operator,
    /// Validation and schemas only.
    Integrator,
    /// Outbox operations.
    Admin,
    /// De-identified statistics, and nothing else.
    Analyst,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caseworker => "caseworker",
            Self::Embassy => "embassy",
            Self::Operator => "operator",
            Self::Integrator => "integrator",
            Self::Admin => "admin",
            Self::Analyst => "analyst",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// An embassy's nationality: it sees only cases of that country's
    /// nationals (the case's origin, second in its reference).
    pub serves: Option<String>,
}

impl Principal {
    /// Whether this caller may know that `case_ref` exists: everyone but an
    /// embassy, and an embassy for its own nationals' cases.
    pub fn may_see_case(&self, case_ref: &str) -> bool {
        match (&self.role, &self.serves) {
            (Role::Embassy, Some(cc)) => {
                crate::domain::ids::CaseRef::parse(case_ref).is_some_and(|c| c.origin() == cc)
            }
            (Role::Embassy, None) => false,
            _ => true,
        }
    }
}

/// Tokens are configured and looked up by their SHA-256 (hex), never kept
/// in clear.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
