//! Views of stored rows as the local API shows them. Embassy and operator
//! routes use them too, so none carries a payload.

use serde_json::{Value, json};

use crate::clock::rfc3339_ms;
use crate::store::timers::TimerRow;
use crate::store::{InboxRow, OutState, OutboxRow};

pub(super) fn parse_json_text(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

pub(super) fn outbound_view(row: &OutboxRow) -> Value {
    json!({
        "direction": "outbound",
        "message_id": row.message_id,
        "case_ref": row.case_ref,
        "type": row.message_type,
        "to": row.peer,
        "in_reply_to": row.in_reply_to,
        "state": row.state,
        "attempts": row.attempts,
        "submitted_at": rfc3339_ms(row.submitted_at),
        "next_attempt_at": matches!(row.state, OutState::Queued | OutState::Delivering)
            .then(|| rfc3339_ms(row.next_attempt_at)),
        "delivered_at": row.delivered_at.map(rfc3339_ms),
        "delivery_deadline": rfc3339_ms(row.deadline_at),
        "last_error": parse_json_text(row.last_error.as_deref()),
        "receipt": parse_json_text(row.receipt.as_deref()),
    })
}

pub(super) fn inbound_view(row: &InboxRow) -> Value {
    json!({
        "direction": "inbound",
        "message_id": row.message_id,
        "case_ref": row.case_ref,
        "type": row.message_type,
        "from": row.sender,
        "in_reply_to": row.in_reply_to,
        "state": "received",
        "received_at": rfc3339_ms(row.received_at),
        "receipt": parse_json_text(Some(&row.receipt)),
    })
}

pub(super) fn timer_view(t: &TimerRow) -> Value {
    json!({
        "id": t.id,
        "case_ref": t.case_ref,
        "message_id": t.message_id,
        "type": t.message_type,
        "expected_type": t.expected_type,
        "side": t.side,
        "peer": t.peer,
        "agreement": t.agreement,
        "state": t.state,
        "started_at": rfc3339_ms(t.started_at),
        "due_at": rfc3339_ms(t.due_at),
        "reminders_fired": t.reminders_fired,
        "next_event_at": t.next_event_at.map(rfc3339_ms),
        "breached_at": t.breached_at.map(rfc3339_ms),
        "answered_at": t.answered_at.map(rfc3339_ms),
        "answer_id": t.answer_id,
        "met_late": t.state == "met" && (t.breached_at.is_some() || t.answered_at.unwrap_or(0) > t.due_at),
    })
}
