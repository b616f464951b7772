//! One message of a bundle, decoded: what the checks read of its envelope,
//! and its receipt checked against the envelope's bytes.

use serde_json::Value;

use super::bundle::{self, part};
use super::error::{VerifyError, broken};
use crate::domain::lifecycle::CaseMessage;
use crate::protocol::Receipt;

/// One message's envelope and receipt, decoded.
pub(super) struct Checked {
    pub envelope: Envelope,
    pub receipt: Receipt,
    pub received_at_ms: i64,
}

/// What the checks read of an envelope.
pub(super) struct Envelope {
    pub case_ref: String,
    pub to: String,
    pub message: CaseMessage,
}

pub(super) fn required(
    b64: &Option<String>,
    i: usize,
    field: &str,
) -> Result<Vec<u8>, VerifyError> {
    let name = part("messages", i, Some(field));
    let text = b64
        .as_deref()
        .ok_or_else(|| broken(&name, "missing", "missing"))?;
    bundle::decode(text).ok_or_else(|| broken(&name, "malformed", "not base64"))
}

pub(super) fn decode_envelope(bytes: &[u8], i: usize) -> Result<Envelope, VerifyError> {
    let name = part("messages", i, Some("envelope"));
    let bad = || {
        broken(
            &name,
            "malformed",
            "not an envelope (message_id, case_ref, type, from, to)",
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?;
    let doc: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(case_ref), Some(to)) = (field("case_ref"), field("to")) else {
        return Err(bad());
    };
    let message = CaseMessage::from_stored(text).ok_or_else(bad)?;
    Ok(Envelope {
        case_ref,
        to,
        message,
    })
}

/// The receipt, what it says of its envelope, and its `received_at`.
pub(super) fn check_receipt(
    bytes: &[u8],
    envelope_bytes: &[u8],
    envelope: &Envelope,
    i: usize,
) -> Result<(Receipt, i64), VerifyError> {
    let name = part("messages", i, Some("receipt"));
    let receipt: Receipt = serde_json::from_slice(bytes)
        .map_err(|e| broken(&name, "malformed", format!("not a receipt: {e}")))?;
    let mismatch = |what: String| broken(&name, "receipt_mismatch", what);
    if receipt.message_id != envelope.message.message_id {
        return Err(mismatch("message_id does not match the envelope's".into()));
    }
    if receipt.receiver != envelope.to {
        return Err(mismatch(format!(
            "receiver {} is not the envelope's `to` ({})",
            receipt.receiver, envelope.to
        )));
    }
    if receipt.envelope_sha256 != bundle::sha256_hex(envelope_bytes) {
        return Err(mismatch(
            "envelope_sha256 does not match the envelope's bytes".into(),
        ));
    }
    let received_at = crate::clock::parse_rfc3339_ms(&receipt.received_at)
        .ok_or_else(|| broken(&name, "malformed", "received_at is not RFC 3339"))?;
    if let Some(due) = &receipt.answer_due
        && crate::clock::parse_rfc3339_ms(&due.due_at).is_none()
    {
        return Err(broken(
            &name,
            "malformed",
            "answer_due.due_at is not RFC 3339",
        ));
    }
    Ok((receipt, received_at))
}
