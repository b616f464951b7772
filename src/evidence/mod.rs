//! Evidence a third party can check: a case's messages as this node
//! exchanged them (the exact envelope bytes, the sender's signature, the
//! receiver's receipt bytes and signature, the certificate chains) and the
//! case's audit records, exported as one bundle whose manifest this node
//! signs, and verified offline with nothing but the countries' CA
//! certificates.
//!
//! - [`bundle`]: the format (one JSON document, version 1) and its types.
//! - [`export`]: a case from the store into a sealed bundle.
//! - [`trust`]: the CA certificates by country, and CRLs.
//! - [`verify`]: every check, naming the first broken part (`error`);
//!   `message` decodes one message's envelope and receipt, `order` checks
//!   the case's order.
//! - [`report`]: what a verified bundle shows (who signed, received when,
//!   answered when, deadlines met).

pub mod bundle;
mod error;
pub mod export;
mod message;
mod order;
pub mod report;
pub mod trust;
pub mod verify;

pub use bundle::Bundle;
pub use export::{ExportError, export};
pub use report::Report;
pub use trust::{Trust, TrustError};
pub use verify::{VerifyError, verify};

#[cfg(test)]
mod tests;
