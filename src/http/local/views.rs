//! The answers of the local API as types: each is what a handler returns
//! and what the OpenAPI document says (`ToSchema`), so the two cannot
//! differ. Embassy and operator routes use them too, so none carries a
//! payload except where a type says so.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::app::submit::Submitted;
use crate::clock::rfc3339_ms;
use crate::protocol::{Detail, ErrorBody, Receipt};
use crate::store::audit::AuditRow;
use crate::store::timers::{EventRow, TimerRow};
use crate::store::{InboxRow, OutState, OutboxRow};

/// Stored JSON text handed on as it is (a receipt is evidence: its bytes
/// are not re-encoded); `None` when the text is missing or not JSON.
fn raw(text: Option<&str>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t.to_string()).ok())
}

pub(super) fn parse_json_text(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// Where an outbound message stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Delivering,
    Delivered,
    Rejected,
    Dead,
}

impl From<OutState> for DeliveryState {
    fn from(s: OutState) -> Self {
        match s {
            OutState::Queued => Self::Queued,
            OutState::Delivering => Self::Delivering,
            OutState::Delivered => Self::Delivered,
            OutState::Rejected => Self::Rejected,
            OutState::Dead => Self::Dead,
        }
    }
}

/// A later `referral.update` (reason correction) that corrected a message:
/// which message and which fields (JSON pointers; no values).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRef {
    #[schema(format = Uuid)]
    pub message_id: String,
    pub pointers: Vec<String>,
}

/// Where a message stands, whichever way it went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "direction", rename_all = "snake_case")]
pub enum MessageStatus {
    Outbound(OutboundStatus),
    Inbound(InboundStatus),
}

impl MessageStatus {
    pub fn message_id(&self) -> &str {
        match self {
            Self::Outbound(o) => &o.message_id,
            Self::Inbound(i) => &i.message_id,
        }
    }

    pub fn set_from_mission(&mut self, from_mission: bool) {
        match self {
            Self::Outbound(o) => o.from_mission = from_mission,
            Self::Inbound(i) => i.from_mission = from_mission,
        }
    }

    pub fn set_corrected_by(&mut self, corrections: Vec<CorrectionRef>) {
        match self {
            Self::Outbound(o) => o.corrected_by = corrections,
            Self::Inbound(i) => i.corrected_by = corrections,
        }
    }
}

/// A message this node sent or is sending.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboundStatus {
    #[schema(format = Uuid)]
    pub message_id: String,
    pub case_ref: String,
    #[serde(rename = "type")]
    pub message_type: String,
    /// The receiving country.
    pub to: String,
    #[schema(format = Uuid)]
    pub in_reply_to: Option<String>,
    pub state: DeliveryState,
    pub attempts: i64,
    #[schema(format = DateTime)]
    pub submitted_at: String,
    /// When the next attempt is due; null once the message is settled.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    /// After this the message is `dead` unless delivered.
    #[schema(format = DateTime)]
    pub delivery_deadline: String,
    /// The last failure: the peer's error body, or what went wrong on the way.
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<Box<RawValue>>,
    /// The receiver's receipt, as it issued it.
    #[schema(value_type = Option<Receipt>)]
    pub receipt: Option<Box<RawValue>>,
    /// This node's detached JWS over the envelope bytes it delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The receiver's detached JWS over the exact receipt bytes, verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_signature: Option<String>,
    /// Present when later corrections changed this message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrected_by: Vec<CorrectionRef>,
    /// True when the sender's consular mission sent it (`sent_by: mission`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_mission: bool,
}

/// A message this node received.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundStatus {
    #[schema(format = Uuid)]
    pub message_id: String,
    pub case_ref: String,
    #[serde(rename = "type")]
    pub message_type: String,
    /// The sending country.
    pub from: String,
    #[schema(format = Uuid)]
    pub in_reply_to: Option<String>,
    /// Always `received`.
    #[schema(pattern = "^received$")]
    pub state: &'static str,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// The receipt this node issued.
    #[schema(value_type = Receipt)]
    pub receipt: Option<Box<RawValue>>,
    /// The sender's detached JWS over the envelope bytes, verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// This node's detached JWS over the exact receipt bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_signature: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrected_by: Vec<CorrectionRef>,
    /// True when the sender's consular mission sent it (`sent_by: mission`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_mission: bool,
}

impl From<&OutboxRow> for MessageStatus {
    fn from(row: &OutboxRow) -> Self {
        Self::Outbound(OutboundStatus {
            message_id: row.message_id.clone(),
            case_ref: row.case_ref.clone(),
            message_type: row.message_type.clone(),
            to: row.peer.clone(),
            in_reply_to: row.in_reply_to.clone(),
            state: row.state.into(),
            attempts: row.attempts,
            submitted_at: rfc3339_ms(row.submitted_at),
            next_attempt_at: matches!(row.state, OutState::Queued | OutState::Delivering)
                .then(|| rfc3339_ms(row.next_attempt_at)),
            delivered_at: row.delivered_at.map(rfc3339_ms),
            delivery_deadline: rfc3339_ms(row.deadline_at),
            last_error: raw(row.last_error.as_deref()),
            receipt: raw(row.receipt.as_deref()),
            signature: row.signature.clone(),
            receipt_signature: row.receipt_signature.clone(),
            corrected_by: Vec::new(),
            from_mission: false,
        })
    }
}

impl From<&InboxRow> for MessageStatus {
    fn from(row: &InboxRow) -> Self {
        Self::Inbound(InboundStatus {
            message_id: row.message_id.clone(),
            case_ref: row.case_ref.clone(),
            message_type: row.message_type.clone(),
            from: row.sender.clone(),
            in_reply_to: row.in_reply_to.clone(),
            state: "received",
            received_at: rfc3339_ms(row.received_at),
            receipt: raw(Some(&row.receipt)),
            signature: row.signature.clone(),
            receipt_signature: row.receipt_signature.clone(),
            corrected_by: Vec::new(),
            from_mission: false,
        })
    }
}

/// Which side of an exchange a timer watches.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimerSide {
    /// This node sent the message and waits for the answer.
    AwaitingAnswer,
    /// This node received the message and owes the answer.
    AnswerDue,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimerState {
    Open,
    Met,
    Breached,
}

/// An acknowledgement deadline.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timer {
    pub id: i64,
    pub case_ref: String,
    #[schema(format = Uuid)]
    pub message_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub expected_type: String,
    pub side: TimerSide,
    pub peer: String,
    pub agreement: String,
    pub state: TimerState,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub due_at: String,
    pub reminders_fired: i64,
    #[schema(format = DateTime)]
    pub next_event_at: Option<String>,
    #[schema(format = DateTime)]
    pub breached_at: Option<String>,
    #[schema(format = DateTime)]
    pub answered_at: Option<String>,
    #[schema(format = Uuid)]
    pub answer_id: Option<String>,
    /// Answered, but after the due time.
    pub met_late: bool,
}

impl From<&TimerRow> for Timer {
    fn from(t: &TimerRow) -> Self {
        Self {
            id: t.id,
            case_ref: t.case_ref.clone(),
            message_id: t.message_id.clone(),
            message_type: t.message_type.clone(),
            expected_type: t.expected_type.clone(),
            side: if t.side == "awaiting_answer" {
                TimerSide::AwaitingAnswer
            } else {
                TimerSide::AnswerDue
            },
            peer: t.peer.clone(),
            agreement: t.agreement.clone(),
            state: match t.state.as_str() {
                "met" => TimerState::Met,
                "breached" => TimerState::Breached,
                _ => TimerState::Open,
            },
            started_at: rfc3339_ms(t.started_at),
            due_at: rfc3339_ms(t.due_at),
            reminders_fired: t.reminders_fired,
            next_event_at: t.next_event_at.map(rfc3339_ms),
            breached_at: t.breached_at.map(rfc3339_ms),
            answered_at: t.answered_at.map(rfc3339_ms),
            answer_id: t.answer_id.clone(),
            met_late: t.state == "met"
                && (t.breached_at.is_some() || t.answered_at.unwrap_or(0) > t.due_at),
        }
    }
}

/// What happened to a case's timers and deliveries.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Reminder,
    Breach,
    Answered,
    AnsweredLate,
    Dead,
    /// A kind this version does not know (written by a newer one).
    Other,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseEvent {
    pub kind: EventKind,
    #[schema(format = Uuid)]
    pub message_id: Option<String>,
    #[schema(format = DateTime)]
    pub at: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<&EventRow> for CaseEvent {
    fn from(e: &EventRow) -> Self {
        Self {
            kind: match e.kind.as_str() {
                "reminder" => EventKind::Reminder,
                "breach" => EventKind::Breach,
                "answered" => EventKind::Answered,
                "answered_late" => EventKind::AnsweredLate,
                "dead" => EventKind::Dead,
                _ => EventKind::Other,
            },
            message_id: e.message_id.clone(),
            at: rfc3339_ms(e.at),
            detail: e.detail.clone(),
        }
    }
}

/// One received message in the inbox feed, with its envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxEntry {
    /// Pass the last one back as `after` to read on.
    #[schema(pattern = "^[0-9]+$")]
    pub cursor: String,
    #[schema(format = Uuid)]
    pub message_id: String,
    pub case_ref: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub from: String,
    #[schema(format = Uuid)]
    pub in_reply_to: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
    #[schema(value_type = Receipt)]
    pub receipt: Option<Box<RawValue>>,
    /// The envelope exactly as received.
    #[schema(value_type = crate::http::openapi::Envelope)]
    pub envelope: Option<Box<RawValue>>,
}

impl From<&InboxRow> for InboxEntry {
    fn from(r: &InboxRow) -> Self {
        Self {
            cursor: r.seq.to_string(),
            message_id: r.message_id.clone(),
            case_ref: r.case_ref.clone(),
            message_type: r.message_type.clone(),
            from: r.sender.clone(),
            in_reply_to: r.in_reply_to.clone(),
            received_at: rfc3339_ms(r.received_at),
            receipt: raw(Some(&r.receipt)),
            envelope: raw(Some(&r.body)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub messages: Vec<InboxEntry>,
    /// The cursor to read on from; the one given when the page is empty.
    #[schema(pattern = "^[0-9]+$")]
    pub next_cursor: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimerPage {
    pub timers: Vec<Timer>,
    /// `after` for the next page; null when this page is empty.
    pub next_cursor: Option<i64>,
}

/// One audit record: who did what to which case, and the chain hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub case_ref: Option<String>,
    #[schema(format = Uuid)]
    pub message_id: Option<String>,
    /// `ok` or `refused:<status>`.
    pub result: String,
    /// The officer the caller acted for (its `On-Behalf-Of` header), as
    /// sent; null when it named none.
    #[schema(pattern = "^[A-Za-z0-9._:@+/-]{1,128}$")]
    pub officer: Option<String>,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

impl From<&AuditRow> for AuditRecord {
    fn from(r: &AuditRow) -> Self {
        Self {
            seq: r.seq,
            at: rfc3339_ms(r.at),
            actor: r.actor.clone(),
            role: r.role.clone(),
            action: r.action.clone(),
            case_ref: r.case_ref.clone(),
            message_id: r.message_id.clone(),
            result: r.result.clone(),
            officer: r.officer.clone(),
            hash: r.hash.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// `after` for the next page; null when this page is empty.
    pub next_cursor: Option<i64>,
}

/// A submission on disk: it will be delivered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    #[schema(format = Uuid)]
    pub message_id: String,
    pub case_ref: String,
    pub state: DeliveryState,
    /// Where to follow it: `GET` this.
    pub status_url: String,
    /// The person did not consent to sharing: these payload fields were
    /// taken out (or, where the schema requires them, replaced by
    /// `[withheld]`) before the message was signed and stored, as its
    /// agreement's `consent.minimal` rule says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
}

impl From<Submitted> for Accepted {
    fn from(s: Submitted) -> Self {
        let row = s.row;
        Self {
            status_url: format!("/v1/messages/{}", row.message_id),
            message_id: row.message_id,
            case_ref: row.case_ref,
            state: row.state.into(),
            withheld: s.withheld,
        }
    }
}

/// The answer to a batch submission: one result per message, in the
/// order of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBatchResults {
    pub results: Vec<MessageBatchResult>,
}

/// What became of one message of a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageBatchResult {
    Accepted(MessageBatchAccepted),
    Refused(MessageBatchRefused),
}

/// A message of a batch on disk (now, or before for a resubmission): the
/// single route's 202 body, with the message's place and that status.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBatchAccepted {
    /// The message's position in the request's `messages`, from 0.
    pub index: usize,
    /// Always 202, as `POST /v1/messages` would answer.
    #[schema(minimum = 202, maximum = 202)]
    pub status: u16,
    #[serde(flatten)]
    pub accepted: Accepted,
}

/// A message of a batch refused, alone: nothing of it was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBatchRefused {
    /// The message's position in the request's `messages`, from 0.
    pub index: usize,
    /// The status `POST /v1/messages` would have answered.
    #[schema(minimum = 400, maximum = 499)]
    pub status: u16,
    /// The standard error body's inner object; its pointers point into
    /// this message.
    pub error: ErrorBody,
}

/// A `dead` or `rejected` message queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    #[schema(format = Uuid)]
    pub message_id: String,
    pub state: DeliveryState,
}

/// What `homeward validate` reports; nothing stored or sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationReport {
    pub valid: bool,
    /// Every problem, with its JSON pointer and the keyword or rule.
    pub violations: Vec<Detail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the gateway answers.
    pub status: &'static str,
    pub node: String,
    pub organisation: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaRef {
    pub version: u32,
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaEntry {
    #[serde(rename = "type")]
    pub message_type: String,
    pub version: u32,
    pub title: Option<String>,
    pub url: String,
}

/// Every message type and version this node speaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaList {
    pub envelope: SchemaRef,
    pub schemas: Vec<SchemaEntry>,
}
