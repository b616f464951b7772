//! Export: every message of a case this node sent or received, with the
//! sender's signature, the receipt and its signature, the certificates of
//! those signatures, and the case's audit records, as one bundle whose
//! manifest this node signs.
//!
//! A message exchanged before signing was turned on is exported as it is,
//! without signatures; verification names it as unsigned. A case whose
//! payloads retention purged is refused: its stored envelopes are
//! skeletons, no longer the bytes that were signed, and a bundle of them
//! would prove nothing but the purge.

use rustls::pki_types::CertificateDer;
use tracing::instrument;

use super::bundle::{
    self, AuditPart, Bundle, Direction, FORMAT, Manifest, ManifestMessage, MessageParts,
    Undelivered, VERSION,
};
use crate::signing::{self, Purpose, Signer};
use crate::store::{self, OutState, Store, StoreError};

/// Why a case cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("case {case_ref}: no message of this case on this node")]
    NoSuchCase { case_ref: String },
    #[error(
        "case {case_ref}: its payloads were purged at {at} under its agreement's retention; \
         the envelopes' signed bytes are gone, so no evidence bundle can be made"
    )]
    Purged { case_ref: String, at: String },
    #[error("case {case_ref}: the store holds no {what} of message {message_id}")]
    Incomplete {
        case_ref: String,
        message_id: String,
        what: &'static str,
    },
    #[error("the signing certificate names node {signer:?}, but this node is {node}")]
    SignerNode {
        signer: Option<String>,
        node: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Audit records read per query.
const AUDIT_PAGE: i64 = 1000;

/// The bundle of `case_ref` from `store`, sealed by `signer` (this node,
/// `node`) at `now_ms`.
#[instrument(skip_all, fields(case_ref = %case_ref))]
pub async fn export(
    store: &Store,
    signer: &Signer,
    node: &str,
    case_ref: &str,
    now_ms: i64,
) -> Result<Bundle, ExportError> {
    if signer.node() != Some(node) {
        return Err(ExportError::SignerNode {
            signer: signer.node().map(str::to_string),
            node: node.to_string(),
        });
    }
    if let Some(at) = store.purged_at(case_ref).await? {
        return Err(ExportError::Purged {
            case_ref: case_ref.to_string(),
            at: crate::clock::rfc3339_ms(at),
        });
    }
    let exchanged = store.case_exchange(case_ref).await?;
    if exchanged.is_empty() {
        return Err(ExportError::NoSuchCase {
            case_ref: case_ref.to_string(),
        });
    }
    let mut certificates = Certificates::default();
    let mut parts = Vec::new();
    let mut entries = Vec::new();
    let mut undelivered = Vec::new();
    for m in exchanged {
        let direction = match m.direction {
            store::Direction::Sent => Direction::Sent,
            store::Direction::Received => Direction::Received,
        };
        let delivered = direction == Direction::Received || m.state == Some(OutState::Delivered);
        let (true, Some(receipt)) = (delivered, &m.receipt) else {
            undelivered.push(Undelivered {
                message_id: m.message_id,
                message_type: m.message_type,
                to: m.peer,
                state: m.state.map_or("unknown", OutState::as_str).to_string(),
            });
            continue;
        };
        let incomplete = |what| ExportError::Incomplete {
            case_ref: case_ref.to_string(),
            message_id: m.message_id.clone(),
            what,
        };
        let body = m.body.as_ref().ok_or_else(|| incomplete("envelope"))?;
        certificates.of(m.signature.as_deref(), Purpose::Envelope);
        certificates.of(m.receipt_signature.as_deref(), Purpose::Receipt);
        parts.push(MessageParts {
            envelope: Some(bundle::encode(body.as_bytes())),
            signature: m.signature.clone(),
            receipt: Some(bundle::encode(receipt.as_bytes())),
            receipt_signature: m.receipt_signature.clone(),
        });
        entries.push(ManifestMessage {
            message_id: m.message_id.clone(),
            seq: m.seq,
            direction,
            envelope: None,
            signature: None,
            receipt: None,
            receipt_signature: None,
        });
    }
    certificates.add(signer.chain());
    let audit = audit_records(store, case_ref).await?;
    let mut bundle = Bundle::unsealed(parts, certificates.encoded(), audit);
    let manifest = Manifest {
        format: FORMAT.to_string(),
        version: VERSION,
        case_ref: case_ref.to_string(),
        exported_by: node.to_string(),
        exported_at: crate::clock::rfc3339_ms(now_ms),
        messages: entries,
        certificates: Vec::new(),
        audit: Vec::new(),
        undelivered,
    };
    bundle.seal(manifest, signer);
    Ok(bundle)
}

/// The case's audit records, oldest first, each as its JSON bytes (base64).
async fn audit_records(store: &Store, case_ref: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let rows = store.audit_rows(Some(case_ref), after, AUDIT_PAGE).await?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        after = last.seq;
        out.extend(rows.iter().map(|r| {
            bundle::encode(&serde_json::to_vec(&AuditPart::from(r)).expect("a record serializes"))
        }));
    }
}

/// The certificates of the bundle's signatures, each once, in the order
/// they were first met.
#[derive(Default)]
struct Certificates(Vec<CertificateDer<'static>>);

impl Certificates {
    /// Those in `jws`'s header. One that does not parse adds none: the
    /// verifier names it.
    fn of(&mut self, jws: Option<&str>, purpose: Purpose) {
        if let Some(chain) = jws.and_then(|j| signing::chain_of(j, purpose).ok()) {
            self.add(&chain);
        }
    }

    fn add(&mut self, chain: &[CertificateDer<'static>]) {
        for cert in chain {
            if !self.0.contains(cert) {
                self.0.push(cert.clone());
            }
        }
    }

    fn encoded(&self) -> Vec<String> {
        self.0.iter().map(|c| bundle::encode(c.as_ref())).collect()
    }
}
