//! The bundle's format: one JSON document (version 1) holding every part
//! as the exact bytes it proves (base64) or the exact text of a signature,
//! and a manifest with the SHA-256 of each part, signed by the exporting
//! node.
//!
//! ```text
//! { "format": "homeward-evidence", "version": 1,
//!   "manifest": b64(manifest JSON),  "manifest_signature": JWS (homeward-evidence+jws),
//!   "messages": [ { "envelope": b64, "signature": JWS|null,
//!                   "receipt": b64, "receipt_signature": JWS|null }, ... ],
//!   "certificates": [ b64(DER), ... ],  "audit": [ b64(record JSON), ... ] }
//! ```
//!
//! A part's digest is over its bytes: the decoded base64, or a signature's
//! text (what a receipt's `signature_sha256` quotes). The manifest is kept
//! as the bytes that were signed, so nothing is re-serialized to check it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::signing::{Purpose, Signer};

/// The `format` of every bundle.
pub const FORMAT: &str = "homeward-evidence";
/// The one version this build writes and reads.
pub const VERSION: u32 = 1;

/// A case's evidence bundle, as written to a file and served.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Bundle {
    /// Always `homeward-evidence`.
    pub format: String,
    /// The format's version: 1.
    pub version: u32,
    /// The manifest's JSON bytes, base64: what `manifest_signature` signs.
    /// Optional in the type so that a missing one is named, not a parse error.
    pub manifest: Option<String>,
    /// The exporting node's detached JWS over the manifest bytes, with its
    /// certificate chain in `x5c`.
    pub manifest_signature: Option<String>,
    /// Every message of the case this node exchanged, in the case's order.
    #[serde(default)]
    pub messages: Vec<MessageParts>,
    /// Every certificate of the signatures' chains (DER, base64), once each.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// The case's audit records on the exporting node (JSON, base64).
    #[serde(default)]
    pub audit: Vec<String>,
}

/// One message's parts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MessageParts {
    /// The envelope's exact bytes, base64.
    pub envelope: Option<String>,
    /// The sender's detached JWS over those bytes; null if sent unsigned.
    pub signature: Option<String>,
    /// The receipt's exact bytes as the receiver issued them, base64.
    pub receipt: Option<String>,
    /// The receiver's detached JWS over the receipt; null if unsigned.
    pub receipt_signature: Option<String>,
}

/// What the exporting node signs: the case, itself, and each part's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub case_ref: String,
    /// The exporting node (its signing certificate names it).
    pub exported_by: String,
    /// RFC 3339, as the exporting node's clock read it; the time its
    /// signature is judged at.
    pub exported_at: String,
    pub messages: Vec<ManifestMessage>,
    /// SHA-256 (hex) of each certificate, in the bundle's order.
    pub certificates: Vec<String>,
    /// SHA-256 (hex) of each audit record, in the bundle's order.
    pub audit: Vec<String>,
    /// Messages this node sent that no receipt proves (queued, in flight,
    /// refused or dead): listed, not evidence.
    pub undelivered: Vec<Undelivered>,
}

/// One message in the manifest: where the case's order put it, and the
/// digests of its parts (null for a part the message does not have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestMessage {
    pub message_id: String,
    /// The exporting node's case-log position.
    pub seq: i64,
    pub direction: Direction,
    pub envelope: Option<String>,
    pub signature: Option<String>,
    pub receipt: Option<String>,
    pub receipt_signature: Option<String>,
}

/// Seen from the exporting node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sent,
    Received,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Undelivered {
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub to: String,
    pub state: String,
}

/// One audit record as the bundle carries it: the row with both hashes, so
/// its hash can be recomputed (`store::audit::chain_hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPart {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub case_ref: Option<String>,
    pub message_id: Option<String>,
    pub result: String,
    /// The officer the caller acted for (`On-Behalf-Of`), if named.
    pub officer: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&crate::store::audit::AuditRow> for AuditPart {
    fn from(r: &crate::store::audit::AuditRow) -> Self {
        Self {
            seq: r.seq,
            at: r.at,
            actor: r.actor.clone(),
            role: r.role.clone(),
            action: r.action.clone(),
            case_ref: r.case_ref.clone(),
            message_id: r.message_id.clone(),
            result: r.result.clone(),
            officer: r.officer.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

impl AuditPart {
    pub fn entry(&self) -> crate::store::audit::AuditEntry {
        crate::store::audit::AuditEntry {
            at: self.at,
            actor: self.actor.clone(),
            role: self.role.clone(),
            action: self.action.clone(),
            case_ref: self.case_ref.clone(),
            message_id: self.message_id.clone(),
            result: self.result.clone(),
            officer: self.officer.clone(),
        }
    }
}

/// SHA-256, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// The digest of a base64 part (None if it is not base64).
pub fn digest_b64(part: &str) -> Option<String> {
    decode(part).map(|b| sha256_hex(&b))
}

impl Bundle {
    /// A bundle of these parts, not yet sealed.
    pub fn unsealed(
        messages: Vec<MessageParts>,
        certificates: Vec<String>,
        audit: Vec<String>,
    ) -> Self {
        Self {
            format: FORMAT.to_string(),
            version: VERSION,
            manifest: None,
            manifest_signature: None,
            messages,
            certificates,
            audit,
        }
    }

    /// Puts in `manifest` with the digests of the bundle's parts as they
    /// are now (its messages' ids, order and directions as given), and
    /// signs it with `signer`.
    pub fn seal(&mut self, mut manifest: Manifest, signer: &Signer) {
        let digest = |p: &Option<String>| p.as_deref().and_then(digest_b64);
        let text_digest = |p: &Option<String>| p.as_deref().map(|t| sha256_hex(t.as_bytes()));
        for (entry, parts) in manifest.messages.iter_mut().zip(&self.messages) {
            entry.envelope = digest(&parts.envelope);
            entry.signature = text_digest(&parts.signature);
            entry.receipt = digest(&parts.receipt);
            entry.receipt_signature = text_digest(&parts.receipt_signature);
        }
        manifest.certificates = self
            .certificates
            .iter()
            .map(|c| digest_b64(c).unwrap_or_default())
            .collect();
        manifest.audit = self
            .audit
            .iter()
            .map(|a| digest_b64(a).unwrap_or_default())
            .collect();
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        self.manifest_signature = Some(signer.sign(Purpose::Evidence, &bytes));
        self.manifest = Some(encode(&bytes));
    }

    /// The bundle as written to a file.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a bundle serializes");
        out.push(b'\n');
        out
    }
}

/// A part's name in reports: `messages[2].receipt`, `certificates[0]`.
pub fn part(kind: &str, index: usize, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("{kind}[{index}].{f}"),
        None => format!("{kind}[{index}]"),
    }
}
