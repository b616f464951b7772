//! What a peer's answer to one message means: a receipt that holds (the
//! peer's signature over its exact bytes, quoting the signature sent) is a
//! delivery; a refusal is final; a failure is retried until the deadline.

use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::Worker;
use super::backoff;
use crate::domain::deadline::{Side, Timed};
use crate::protocol::Receipt;
use crate::signing::{self, Purpose};
use crate::store::{Claimed, Outcome};

/// A peer's answer to one message.
pub(super) struct Answer {
    pub(super) status: reqwest::StatusCode,
    pub(super) retry_after: Option<u64>,
    pub(super) text: String,
    /// What this node sent as its signature of the message.
    pub(super) signature: Option<String>,
    /// The peer's signature of the receipt in `text`.
    pub(super) receipt_signature: Option<String>,
}

impl Worker {
    /// This node's signature of a message's exact bytes (deterministic:
    /// every attempt sends the same).
    pub(super) fn sign(&self, c: &Claimed) -> Option<String> {
        self.node
            .credentials()
            .signer
            .as_ref()
            .map(|s| s.sign(Purpose::Envelope, c.body.as_bytes()))
    }

    /// Whether a receipt proves delivery to a third party: signed by the
    /// peer's document-signing certificate, over these exact bytes, quoting
    /// the signature this node sent. An unsigned receipt is taken from a
    /// peer that does not sign (yet).
    pub(super) fn check_receipt(
        &self,
        c: &Claimed,
        receipt: &Receipt,
        text: &str,
        answer: &Answer,
    ) -> Result<(), String> {
        if let Some(sent) = &answer.signature
            && let Some(quoted) = &receipt.signature_sha256
            && *quoted != signing::digest(sent)
        {
            return Err("the receipt quotes another signature than the one sent".into());
        }
        let Some(jws) = &answer.receipt_signature else {
            return self.node.admission().unsigned_from(&c.peer).map_err(|e| {
                self.node.metrics.receipt_invalid(e.code());
                format!("{}: {e}", e.code())
            });
        };
        let credentials = self.node.credentials();
        credentials
            .verifier
            .verify_now(
                jws,
                Purpose::Receipt,
                text.as_bytes(),
                credentials.cas_of(&c.peer),
                credentials.crls_of(&c.peer),
                &c.peer,
            )
            .map(|_| ())
            .map_err(|e| {
                self.node.metrics.receipt_invalid(e.code());
                format!("{}: {e}", e.code())
            })
    }

    /// Turns the peer's answer for one message into an outcome.
    pub(super) fn classify(&self, c: &Claimed, answer: Answer) -> Outcome {
        let status = answer.status;
        let retry_after = answer.retry_after;
        if status.is_success() {
            return match serde_json::from_str::<Receipt>(&answer.text) {
                Ok(r) if r.message_id == c.message_id && r.envelope_sha256 == c.body_sha256 => {
                    if let Err(why) = self.check_receipt(c, &r, &answer.text, &answer) {
                        // Never a silent "delivered": the peer holds the
                        // message, but this node has no proof of it yet.
                        error!(reason = %why, "the peer's receipt does not hold; will retry");
                        return self.retry_or_dead(
                            c,
                            json!({"kind": "receipt_invalid", "status": status.as_u16(), "message": why}),
                        );
                    }
                    info!("delivered");
                    let now = self.node.clock.now_ms();
                    let received_at = crate::clock::parse_rfc3339_ms(&r.received_at).unwrap_or(now);
                    let due_at = r
                        .answer_due
                        .as_ref()
                        .and_then(|a| crate::clock::parse_rfc3339_ms(&a.due_at));
                    let timer = self.node.deadlines().timer_for(
                        Side::AwaitingAnswer,
                        Timed {
                            case_ref: &c.case_ref,
                            message_id: &c.message_id,
                            message_type: &c.message_type,
                            is_reply: c.in_reply_to.is_some(),
                            peer: &c.peer,
                        },
                        received_at,
                        due_at,
                    );
                    Outcome::Delivered {
                        receipt: answer.text,
                        signature: answer.signature,
                        receipt_signature: answer.receipt_signature,
                        at: now,
                        received_at,
                        timer,
                    }
                }
                Ok(_) => {
                    error!("peer receipt does not match the message sent");
                    Outcome::Rejected {
                        reason: json!({"kind": "receipt_mismatch", "status": status.as_u16(),
                            "message": "the peer's receipt names another message or other content"})
                        .to_string(),
                    }
                }
                Err(e) => self.retry_or_dead(
                    c,
                    json!({"kind": "bad_receipt", "status": status.as_u16(), "message": format!("unreadable receipt: {e}")}),
                ),
            };
        }
        let text = &answer.text;
        let peer_error: Value = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("error").cloned())
            .unwrap_or_else(|| json!({"message": text.chars().take(500).collect::<String>()}));
        let detail =
            json!({"kind": "peer_refused", "status": status.as_u16(), "error": peer_error});
        if retryable(status) {
            warn!(status = status.as_u16(), "peer failed; will retry");
            let mut outcome = self.retry_or_dead(c, detail);
            if let (
                Outcome::Retry {
                    next_attempt_at, ..
                },
                Some(secs),
            ) = (&mut outcome, retry_after)
            {
                let asked = self
                    .node
                    .clock
                    .now_ms()
                    .saturating_add(i64::try_from(secs.min(3600) * 1000).unwrap_or(0));
                *next_attempt_at = (*next_attempt_at).max(asked);
            }
            outcome
        } else {
            warn!(status = status.as_u16(), "peer rejected the message");
            Outcome::Rejected {
                reason: detail.to_string(),
            }
        }
    }

    pub(super) fn retry_or_dead(&self, c: &Claimed, error: Value) -> Outcome {
        let now = self.node.clock.now_ms();
        if now >= c.deadline_at {
            error!(
                attempts = c.attempts,
                "delivery deadline passed; message is dead"
            );
            return Outcome::Dead {
                error: error.to_string(),
                at: now,
            };
        }
        let delay = backoff(&self.node.settings.delivery, c.attempts);
        let next = now
            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
            .min(c.deadline_at);
        Outcome::Retry {
            error: error.to_string(),
            next_attempt_at: next,
        }
    }
}

/// Whether a status is a failure worth a retry (and a sign the peer is
/// down): 5xx, 408, 429.
pub(super) fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The peer's `Retry-After`, in seconds, if it sent one.
pub(super) fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
