//! The printed documents of a case, read from the store: the handover
//! record and the person's own timeline, built by their domain modules
//! from the case's messages of both directions (opened from their sealed
//! bodies, in the case's order, as [`crate::store::Store::case_exchange`]
//! gives them).

use std::collections::HashMap;

use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::handover::{HandoverError, HandoverRecord};
use crate::domain::lifecycle::{self, CaseMessage};
use crate::domain::person_timeline::PersonTimeline;
use crate::store::{Direction, OutState, StoreError};

/// Why a document cannot be printed.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("no message of case {case_ref} here")]
    NoSuchCase { case_ref: String },
    #[error(transparent)]
    Handover(#[from] HandoverError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A case's messages as the documents read them.
struct CaseRecord {
    history: Vec<CaseMessage>,
    /// Each message's envelope `created_at`, by message id.
    created_at: HashMap<String, String>,
}

/// The messages of the case that count (a sent message the peer refused
/// or that died never reached the other side), in the case's order.
async fn case_record(node: &Node, case_ref: &str) -> Result<CaseRecord, PrintError> {
    let exchanged = node.store.case_exchange(case_ref).await?;
    if exchanged.is_empty() {
        return Err(PrintError::NoSuchCase {
            case_ref: case_ref.to_string(),
        });
    }
    let mut record = CaseRecord {
        history: Vec::new(),
        created_at: HashMap::new(),
    };
    for m in exchanged {
        let refused = m.direction == Direction::Sent
            && matches!(m.state, Some(OutState::Rejected | OutState::Dead));
        let Some(body) = m.body.filter(|_| !refused) else {
            continue;
        };
        if let Some(created) = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["created_at"].as_str().map(String::from))
        {
            record.created_at.insert(m.message_id.clone(), created);
        }
        if let Some(message) = CaseMessage::from_stored(&body) {
            record.history.push(message);
        }
    }
    Ok(record)
}

/// The case's last handover record with its countersignature.
pub async fn handover_record(node: &Node, case_ref: &str) -> Result<HandoverRecord, PrintError> {
    let r = case_record(node, case_ref).await?;
    Ok(HandoverRecord::of_case(
        case_ref,
        &r.history,
        &r.created_at,
    )?)
}

/// The person's own timeline: what happened, the state, the answers
/// still awaited (open timers, by the due time both sides hold).
pub async fn person_timeline(node: &Node, case_ref: &str) -> Result<PersonTimeline, PrintError> {
    let r = case_record(node, case_ref).await?;
    let state = lifecycle::replay(case_ref, &r.history);
    let awaited: Vec<(String, String)> = node
        .store
        .case_timers(case_ref)
        .await?
        .into_iter()
        .filter(|t| t.state == "open" || t.state == "breached")
        .map(|t| (t.expected_type, rfc3339_ms(t.due_at)))
        .collect();
    Ok(PersonTimeline::of_case(
        case_ref,
        &r.history,
        &r.created_at,
        state,
        &awaited,
    ))
}
