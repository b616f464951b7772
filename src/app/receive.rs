//! Receiving messages from a peer: each message is admitted on its own (the
//! receiver does not trust the sender to have checked), the admitted ones
//! of a batch are committed in one transaction, and each gets its receipt:
//! the exact bytes stored with it, returned again for a resend.

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, warn};

use super::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::admission::Refusal;
use crate::domain::consent;
use crate::domain::deadline::{Side, Timed};
use crate::domain::lifecycle::CaseMessage;
use crate::protocol::{AnswerDue, Receipt};
use crate::signing::{self, Purpose};
use crate::store::{NewInbound, Received, StoreError};

/// One message as it arrived: its exact text, that text parsed, and the
/// sender's signature of the text if it sent one.
#[derive(Debug)]
pub struct Arrival {
    pub text: String,
    pub doc: Value,
    pub signature: Option<String>,
}

/// A message committed to the inbox (now, or earlier for a resend).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The receipt's exact text, as stored and as the sender gets it.
    pub receipt: String,
    /// This node's signature of `receipt`, when it signs.
    pub receipt_signature: Option<String>,
    pub fresh: bool,
}

/// What became of one message of a batch.
pub type Judged = Result<Accepted, Refusal>;

/// Receives one message from `sender` (the node its certificate names).
pub async fn receive(node: &Node, sender: &str, arrival: Arrival) -> Result<Judged, StoreError> {
    let mut results = receive_many(node, sender, vec![arrival]).await?;
    Ok(results.remove(0))
}

/// Receives up to a batch of messages from `sender`, each judged alone; the
/// admitted ones are committed in one transaction. The answers are in the
/// order of `arrivals`. A store failure fails the whole batch: nothing of
/// it was committed, and the sender retries each message.
pub async fn receive_many(
    node: &Node,
    sender: &str,
    arrivals: Vec<Arrival>,
) -> Result<Vec<Judged>, StoreError> {
    let mut results: Vec<Option<Judged>> = Vec::with_capacity(arrivals.len());
    let mut admitted: Vec<NewInbound> = Vec::new();
    let mut slots = Vec::new();
    for arrival in arrivals {
        // The case's consent, for a message silent on it (read before
        // admission; a referral.notify starts its case).
        let case_withheld = match (
            arrival.doc["type"].as_str(),
            arrival.doc["case_ref"].as_str(),
        ) {
            (Some(t), Some(case_ref)) if t != "referral.notify" => {
                consent::case_withheld(&node.store.case_history(case_ref).await?)
            }
            _ => false,
        };
        match admit(node, sender, arrival, case_withheld) {
            Ok(new) => {
                slots.push(results.len());
                admitted.push(new);
                results.push(None);
            }
            Err(refusal) => results.push(Some(Err(refusal))),
        }
    }
    if !admitted.is_empty() {
        let stored = node.store.receive_many(&admitted).await?;
        for ((slot, new), one) in slots.into_iter().zip(&admitted).zip(stored) {
            let span = tracing::info_span!("receive", message_id = %new.message_id, case_ref = %new.case_ref, peer = %sender);
            let judged = span.in_scope(|| settle(node, new, one));
            if matches!(&judged, Ok(a) if a.fresh) && withdraws(new) {
                super::withdrawal::reduce_received(node, sender, new)
                    .instrument(span)
                    .await?;
            }
            results[slot] = Some(judged);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every message has a result"))
        .collect())
}

/// Checks the sender's signature of the exact bytes that arrived: by a
/// document-signing certificate of the sender country's CA, valid now,
/// naming the node that sent it.
fn verify_signature(node: &Node, sender: &str, arrival: &Arrival) -> Result<(), Refusal> {
    let Some(jws) = &arrival.signature else {
        return node.admission().unsigned_from(sender);
    };
    let credentials = node.credentials();
    // Judged now, the receiver's time, which its receipt records: not at
    // the envelope's `created_at`, which the sending system chose (a case
    // migrated from paper is created years before any key existed).
    credentials
        .verifier
        .verify_now(
            jws,
            Purpose::Envelope,
            arrival.text.as_bytes(),
            credentials.cas_of(sender),
            credentials.crls_of(sender),
            sender,
        )
    .map(|_| ())
    .map_err(|e| {
        warn!(peer = %sender, code = e.code(), error = %e, "refused a message whose signature does not hold");
        node.metrics.signature_refused(e.code());
        Refusal::Signature {
            code: e.code(),
            message: e.to_string(),
        }
    })
}

/// Admits one envelope from `sender` and builds what the store commits,
/// receipt included.
fn admit(
    node: &Node,
    sender: &str,
    arrival: Arrival,
    case_withheld: bool,
) -> Result<NewInbound, Refusal> {
    verify_signature(node, sender, &arrival)?;
    let envelope = node
        .admission()
        .admit_inbound(sender, arrival.doc)
        .inspect_err(|r| match r {
            Refusal::SenderMismatch { from, .. } => {
                warn!(peer = %sender, claimed = %from, "peer sent a message under another node's name")
            }
            r => info!(peer = %sender, code = r.code(), "refused a message from a peer"),
        })?;
    // The receiver applies the agreement's consent rule itself.
    node.admission().consent_inbound(&envelope, case_withheld)?;
    node.admission().mission_may_send(&envelope, sender)?;
    let body = arrival.text;
    let body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
    let now = node.clock.now_ms();
    let message_id = envelope.message_id.to_string();
    let timer = node.deadlines().timer_for(
        Side::AnswerDue,
        Timed {
            case_ref: &envelope.case_ref,
            message_id: &message_id,
            message_type: &envelope.message_type,
            is_reply: envelope.in_reply_to.is_some(),
            peer: sender,
        },
        now,
        None,
    );
    let receipt = Receipt {
        message_id: message_id.clone(),
        receiver: node.country.clone(),
        received_at: rfc3339_ms(now),
        envelope_sha256: body_sha256.clone(),
        answer_due: timer.as_ref().map(|t| AnswerDue {
            message_type: t.expected_type.clone(),
            due_at: rfc3339_ms(t.due_at),
        }),
        signature_sha256: arrival.signature.as_deref().map(signing::digest),
    };
    let receipt = serde_json::to_string(&receipt).expect("a receipt serializes");
    let receipt_signature = node
        .credentials()
        .signer
        .as_ref()
        .map(|s| s.sign(Purpose::Receipt, receipt.as_bytes()));
    Ok(NewInbound {
        search: node.search_digests(&envelope.message_type, &envelope.payload),
        facts: crate::domain::facts::extract(&envelope),
        case_message: CaseMessage::from(&envelope),
        message_id,
        case_ref: envelope.case_ref,
        sender: sender.to_string(),
        message_type: envelope.message_type,
        in_reply_to: envelope.in_reply_to.map(|u| u.to_string()),
        body,
        body_sha256,
        received_at: now,
        receipt,
        receipt_signature,
        signature: arrival.signature,
        timer,
    })
}

/// Whether a message withdraws its case's consent to sharing.
fn withdraws(new: &NewInbound) -> bool {
    new.message_type == "referral.update"
        && consent::stated(&new.case_message.payload) == Some(false)
}

/// What the store's answer for one message means for its sender.
fn settle(node: &Node, new: &NewInbound, stored: Received) -> Judged {
    match stored {
        Received::Stored {
            receipt,
            receipt_signature,
            fresh,
        } => {
            if fresh {
                info!(message_type = %new.message_type, "received");
                node.metrics.received.inc();
                node.timer_wake
                    .opened(new.timer.as_ref().and_then(|t| t.first_event_at));
            }
            Ok(Accepted {
                receipt,
                receipt_signature,
                fresh,
            })
        }
        Received::Refused(refusal) => {
            info!(
                code = refusal.code(),
                "refused a message its case does not allow"
            );
            Err(refusal)
        }
        Received::Conflict => Err(Refusal::DuplicateMessageId {
            message_id: new.message_id.clone(),
            inbound: true,
        }),
    }
}
