//! The order of a case's messages in a bundle: what a node that rewrote
//! its own bundle (and signed the manifest again) still cannot fake. Each
//! message comes after the one it replies to; the case's lifecycle admits
//! each in turn (as the store did when it committed them, in this order);
//! the exporting node's order (`seq`) only grows; and messages received by
//! the same node were received in that order, by the receivers' signed
//! `received_at` (per case, a peer is sent messages in the order they were
//! committed).
//!
//! `created_at` is not compared: the sending system chooses it, and a case
//! moved from paper carries dates from before any gateway.

use std::collections::HashMap;

use super::bundle::{Manifest, part};
use super::error::{VerifyError, broken};
use super::message::Checked;
use crate::clock::rfc3339_ms;
use crate::domain::admission;
use crate::domain::lifecycle::CaseMessage;

pub(super) fn check(manifest: &Manifest, checked: &[Checked]) -> Result<(), VerifyError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut history: Vec<CaseMessage> = Vec::with_capacity(checked.len());
    // receiver -> (index, received_at) of the last message it received
    let mut last_received: HashMap<&str, (usize, i64)> = HashMap::new();
    for (i, c) in checked.iter().enumerate() {
        let name = part("messages", i, None);
        let message = &c.envelope.message;
        if i > 0 && manifest.messages[i].seq <= manifest.messages[i - 1].seq {
            return Err(broken(
                &name,
                "out_of_order",
                format!(
                    "comes before messages[{}] in the exporting node's order (seq)",
                    i - 1
                ),
            ));
        }
        if let Some(j) = seen.get(message.message_id.as_str()) {
            return Err(broken(
                &name,
                "duplicate",
                format!("is messages[{j}] again ({})", message.message_id),
            ));
        }
        if let Some(target) = &message.in_reply_to
            && !seen.contains_key(target.as_str())
        {
            return Err(broken(
                &name,
                "out_of_order",
                format!("replies to {target}, which is not earlier in the bundle"),
            ));
        }
        admission::admit_in_case(&c.envelope.case_ref, &history, message).map_err(|r| {
            broken(
                &name,
                "out_of_order",
                format!("the case's lifecycle does not allow it here: {r}"),
            )
        })?;
        let receiver = c.receipt.receiver.as_str();
        if let Some((j, at)) = last_received.get(receiver)
            && c.received_at_ms < *at
        {
            return Err(broken(
                part("messages", i, Some("receipt")),
                "out_of_order",
                format!(
                    "{receiver} received it at {}, before messages[{j}] ({}), which comes first",
                    rfc3339_ms(c.received_at_ms),
                    rfc3339_ms(*at)
                ),
            ));
        }
        last_received.insert(receiver, (i, c.received_at_ms));
        seen.insert(&message.message_id, i);
        history.push(message.clone());
    }
    Ok(())
}
