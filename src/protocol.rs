//! The peer wire contract, shared by the peer API (server) and the delivery
//! worker (client): paths, the batch limit, the receipt, the batch request
//! and answer, and the one error body both APIs use. A change here is a
//! change of protocol between countries' gateways.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// One envelope per request.
pub const MESSAGES_PATH: &str = "/peer/v1/messages";
/// Up to [`BATCH_MAX`] envelopes per request, each judged on its own.
pub const BATCH_PATH: &str = "/peer/v1/messages/batch";
/// A corridor's tally of messages, for reconciliation
/// (`domain::reconcile`, whose `ReconcileRequest` is the body); answered
/// signed in [`SIGNATURE_HEADER`].
pub const RECONCILE_PATH: &str = "/peer/v1/reconcile";
/// Request header: the sender's detached JWS over the exact body bytes.
pub const SIGNATURE_HEADER: &str = "homeward-signature";
/// Response header: the receiver's detached JWS over the exact receipt bytes.
pub const RECEIPT_SIGNATURE_HEADER: &str = "homeward-receipt-signature";
/// Most messages in one batch.
pub const BATCH_MAX: usize = 64;

/// Evidence that the receiver committed a message to its inbox. Parsed
/// leniently (unknown fields allowed) so peers can add fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Receipt {
    #[schema(format = Uuid)]
    pub message_id: String,
    /// The receiving node's country.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub receiver: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// SHA-256 of the envelope bytes as received; the sender checks it
    /// against what it sent.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub envelope_sha256: String,
    /// The answer the receiver owes and when, counted in the receiver's
    /// calendar; both sides' timers use this same due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_due: Option<AnswerDue>,
    /// SHA-256 (hex) of the sender's signature the receiver verified, when
    /// the message was signed: the receipt then proves which signed bytes
    /// arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub signature_sha256: Option<String>,
}

/// The answer a receipt says is owed: its type and due time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AnswerDue {
    #[serde(rename = "type")]
    pub message_type: String,
    #[schema(format = DateTime)]
    pub due_at: String,
}

/// `POST` [`BATCH_PATH`]: each envelope as the exact text the sender
/// stored, so the receiver hashes the same bytes the sender did.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchRequest<'a> {
    #[serde(borrow)]
    pub messages: Vec<std::borrow::Cow<'a, str>>,
    /// The sender's signature of each message, in order, when it signs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<Option<String>>,
}

/// The answer to a batch: one result per message, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

/// One message's answer in a batch: its HTTP status and either the receipt
/// (kept as the exact bytes the receiver issued: it is evidence) or the
/// error body's inner object.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    /// 200 with a receipt, or the status a single delivery would have had.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Receipt>)]
    pub receipt: Option<Box<RawValue>>,
    /// The receiver's detached JWS over the exact receipt bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// One problem of a refusal, located where it can be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Detail {
    /// JSON pointer into the submitted document, when the problem has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The schema keyword or rule that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    pub message: String,
}

impl Detail {
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            pointer: None,
            keyword: None,
            message: message.into(),
        }
    }

    pub fn at(pointer: impl Into<String>, keyword: &str, message: impl Into<String>) -> Self {
        Self {
            pointer: Some(pointer.into()),
            keyword: Some(keyword.to_string()),
            message: message.into(),
        }
    }
}

/// The one error body of every refusal on both APIs:
/// `{"error": {"code", "message", "details": [...]}}`. `code` is stable and
/// meant for machines; `message` is for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// Stable, for machines.
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Vec<Detail>,
}

/// Every refusal on both APIs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}
