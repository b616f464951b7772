//! Deadline policy: which timer a message opens on this node, and when its
//! reminders and breach fall. The agreements say which answer a message
//! expects and within how long; the answering country's calendar turns that
//! into a due time; the reminder fractions are node configuration.

use serde::Serialize;

use super::agreement::AgreementBook;
use super::calendar::WorkCalendar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// This node sent the message and waits for the answer.
    AwaitingAnswer,
    /// This node received the message and owes the answer.
    AnswerDue,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingAnswer => "awaiting_answer",
            Self::AnswerDue => "answer_due",
        }
    }
}

/// A timer to open.
#[derive(Debug, Clone)]
pub struct NewTimer {
    pub case_ref: String,
    pub message_id: String,
    pub message_type: String,
    pub expected_type: String,
    pub side: Side,
    pub peer: String,
    pub agreement: String,
    pub started_at: i64,
    pub due_at: i64,
    pub first_event_at: Option<i64>,
}

/// When the first event of a timer falls: its first reminder, or the breach.
pub fn first_event(started_at: i64, due_at: i64, reminders: &[f64]) -> Option<i64> {
    next_event(started_at, due_at, reminders, 0)
}

/// When the event after `fired` reminders falls.
pub fn next_event(started_at: i64, due_at: i64, reminders: &[f64], fired: usize) -> Option<i64> {
    match reminders.get(fired) {
        Some(f) => Some(started_at + ((due_at - started_at) as f64 * f) as i64),
        None => Some(due_at),
    }
}

/// A message, as far as its deadline is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Timed<'a> {
    pub case_ref: &'a str,
    pub message_id: &'a str,
    pub message_type: &'a str,
    /// Whether the message answers another (`in_reply_to` set).
    pub is_reply: bool,
    /// The other node of the exchange.
    pub peer: &'a str,
}

/// What deciding a message's timer needs, as a value.
#[derive(Debug, Clone)]
pub struct DeadlinePolicy<'a> {
    /// This node's country.
    pub country: &'a str,
    pub agreements: std::sync::Arc<AgreementBook>,
    /// This node's working calendar: due times of answers this node owes.
    pub calendar: &'a WorkCalendar,
    /// Reminder fractions of the deadline, ascending.
    pub reminders: &'a [f64],
}

impl DeadlinePolicy<'_> {
    /// The timer `message` opens on this node at `started_at`, if its
    /// agreement expects an answer. `due_at` is the receiver's due time
    /// from its receipt, when there is one; otherwise the due time is
    /// counted in this node's calendar.
    pub fn timer_for(
        &self,
        side: Side,
        message: Timed<'_>,
        started_at: i64,
        due_at: Option<i64>,
    ) -> Option<NewTimer> {
        let agreement = self.agreements.between(self.country, message.peer)?;
        let (expected, deadline) = agreement.rule(message.message_type)?.expects.clone()?;
        // A reply of the type it answers (a countersigned handover) closes a
        // timer; it does not open another.
        if message.is_reply && expected == message.message_type {
            return None;
        }
        let due_at = due_at.unwrap_or_else(|| {
            crate::clock::unix_ms(
                self.calendar
                    .due(crate::clock::from_unix_ms(started_at), deadline),
            )
        });
        Some(NewTimer {
            case_ref: message.case_ref.to_string(),
            message_id: message.message_id.to_string(),
            message_type: message.message_type.to_string(),
            expected_type: expected,
            side,
            peer: message.peer.to_string(),
            agreement: agreement.id.clone(),
            started_at,
            due_at,
            first_event_at: first_event(started_at, due_at, self.reminders),
        })
    }
}
