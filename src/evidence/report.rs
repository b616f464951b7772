//! What a verified bundle shows: the messages, who signed each, when each
//! was received, and for each answer a receipt said was owed, when it came
//! and whether it came in time. Times are the receivers' signed
//! `received_at`; a deadline is the receipt's `answer_due`, which both
//! sides' timers used.

use std::fmt;

use super::bundle::{Manifest, Undelivered};
use super::message::{Checked, Envelope};
use crate::clock::{parse_rfc3339_ms, rfc3339_ms};
use crate::protocol::Receipt;

/// The report of a bundle whose parts all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub case_ref: String,
    pub exported_by: String,
    pub exported_at: String,
    /// The node whose signature over the manifest held.
    pub manifest_signed_by: String,
    pub messages: Vec<MessageReport>,
    pub audit_records: usize,
    pub undelivered: Vec<Undelivered>,
    /// Parts with no signature (messages exchanged before signing was
    /// turned on): present and consistent, but nothing proves who made them.
    pub unsigned: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReport {
    pub message_id: String,
    pub message_type: String,
    pub from: String,
    pub to: String,
    /// The node whose signature of the envelope held; None if unsigned.
    pub signed_by: Option<String>,
    /// The node whose signature of the receipt held; None if unsigned.
    pub receipt_signed_by: Option<String>,
    pub received_at: String,
    pub answer: Option<Answer>,
}

/// An answer a receipt said was owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub expected_type: String,
    pub due_at: String,
    pub answered: Option<Answered>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The answering message's place in the bundle.
    pub by: usize,
    /// When its receiver received it.
    pub at: String,
    pub in_time: bool,
}

impl MessageReport {
    pub(super) fn new(
        envelope: &Envelope,
        receipt: &Receipt,
        signed_by: Option<String>,
        receipt_signed_by: Option<String>,
    ) -> Self {
        Self {
            message_id: envelope.message.message_id.clone(),
            message_type: envelope.message.message_type.clone(),
            from: envelope.message.from.clone(),
            to: envelope.to.clone(),
            signed_by,
            receipt_signed_by,
            received_at: receipt.received_at.clone(),
            answer: receipt.answer_due.as_ref().map(|due| Answer {
                expected_type: due.message_type.clone(),
                due_at: due.due_at.clone(),
                answered: None,
            }),
        }
    }
}

impl Report {
    pub(super) fn new(
        manifest: &Manifest,
        manifest_signed_by: String,
        mut messages: Vec<MessageReport>,
        checked: &[Checked],
        audit_records: usize,
        unsigned: Vec<String>,
    ) -> Self {
        for (i, m) in messages.iter_mut().enumerate() {
            let Some(answer) = m.answer.as_mut() else {
                continue;
            };
            let due = parse_rfc3339_ms(&answer.due_at).unwrap_or(i64::MAX);
            // The first later message of the expected type that replies.
            answer.answered = checked
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, c)| {
                    c.envelope.message.in_reply_to.as_ref() == Some(&m.message_id)
                        && c.envelope.message.message_type == answer.expected_type
                })
                .map(|(by, c)| Answered {
                    by,
                    at: rfc3339_ms(c.received_at_ms),
                    in_time: c.received_at_ms <= due,
                });
        }
        Self {
            case_ref: manifest.case_ref.clone(),
            exported_by: manifest.exported_by.clone(),
            exported_at: manifest.exported_at.clone(),
            manifest_signed_by,
            messages,
            audit_records,
            undelivered: manifest.undelivered.clone(),
            unsigned,
        }
    }

    /// Every part holds and every message and receipt was signed.
    pub fn verified(&self) -> bool {
        self.unsigned.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "case {}: {} message(s), exported by {} at {} (manifest signed by {})",
            self.case_ref,
            self.messages.len(),
            self.exported_by,
            self.exported_at,
            self.manifest_signed_by
        )?;
        let signer = |s: &Option<String>| s.clone().unwrap_or_else(|| "UNSIGNED".to_string());
        for (i, m) in self.messages.iter().enumerate() {
            writeln!(
                f,
                "  [{i}] {} {} -> {}  {}",
                m.message_type, m.from, m.to, m.message_id
            )?;
            writeln!(
                f,
                "      signed by {}; received by {} at {}; receipt signed by {}",
                signer(&m.signed_by),
                m.to,
                m.received_at,
                signer(&m.receipt_signed_by)
            )?;
            if let Some(a) = &m.answer {
                let outcome = match &a.answered {
                    Some(done) => format!(
                        "answered by [{}] at {}: {}",
                        done.by,
                        done.at,
                        if done.in_time { "in time" } else { "LATE" }
                    ),
                    None => {
                        let overdue = parse_rfc3339_ms(&a.due_at)
                            .zip(parse_rfc3339_ms(&self.exported_at))
                            .is_some_and(|(due, at)| at > due);
                        if overdue {
                            "not answered, OVERDUE at export".to_string()
                        } else {
                            "not answered yet at export".to_string()
                        }
                    }
                };
                writeln!(
                    f,
                    "      answer due: {} by {}; {outcome}",
                    a.expected_type, a.due_at
                )?;
            }
        }
        writeln!(
            f,
            "  audit: {} record(s), each hash holds",
            self.audit_records
        )?;
        for u in &self.undelivered {
            writeln!(
                f,
                "  not delivered (no receipt, not evidence): {} {} to {} ({})",
                u.message_id, u.message_type, u.to, u.state
            )?;
        }
        if self.verified() {
            write!(
                f,
                "VERIFIED: every part matches the signed manifest; every signature, chain and \
                 receipt holds at its time; the case's order holds"
            )
        } else {
            write!(
                f,
                "NOT VERIFIED: unsigned, nothing proves who made them: {}",
                self.unsigned.join(", ")
            )
        }
    }
}
