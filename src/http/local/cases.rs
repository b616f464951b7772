//! A case as this node knows it: its state, what may come next, its
//! timers and events, and every message it sent or received, in time
//! order. No payloads, except the corrected documents a caseworker reads.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::access::Routes;
use super::views::{inbound_view, outbound_view, timer_view};
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Principal;
use crate::domain::access::Role::{self, *};
use crate::domain::admission::{corrected_payload, is_correction};
use crate::domain::lifecycle::{self, CaseMessage};
use crate::http::error::ApiError;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        Method::GET,
        "/v1/cases/{case_ref}",
        &[Caseworker, Embassy, Operator],
        Some("case.read"),
        get(case_timeline),
    )
}

/// `GET /v1/cases/{case_ref}`: every message of the case this node sent or
/// received, in time order, with delivery state and receipts. A message a
/// later `referral.update` corrected lists those corrections (by pointer);
/// a caseworker also gets each corrected document with its corrections
/// applied beside the original as it was sent.
async fn case_timeline(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    Path(case_ref): Path<String>,
) -> Result<Response, ApiError> {
    let (out, inb) = node.store.case_messages(&case_ref).await?;
    if out.is_empty() && inb.is_empty() {
        return Err(ApiError::not_found("case"));
    }
    let mut timeline: Vec<(i64, Value)> = out
        .iter()
        .map(|r| (r.submitted_at, outbound_view(r)))
        .chain(inb.iter().map(|r| (r.received_at, inbound_view(r))))
        .collect();
    timeline.sort_by_key(|(at, _)| *at);
    let history = node.store.case_history(&case_ref).await?;
    let state = lifecycle::replay(&case_ref, &history);
    for (_, view) in &mut timeline {
        let corrections = corrections_of(view["message_id"].as_str(), &history);
        if !corrections.is_empty() {
            view["corrected_by"] = Value::Array(corrections);
        }
    }
    let timers = node.store.case_timers(&case_ref).await?;
    let events = node.store.case_events(&case_ref).await?;
    let mut body = json!({
        "case_ref": case_ref,
        "node": node.country,
        "state": state,
        "allowed_next": lifecycle::allowed_next(state),
        "timers": timers.iter().map(timer_view).collect::<Vec<_>>(),
        "events": events.iter().map(|e| json!({
            "kind": e.kind, "message_id": e.message_id, "at": rfc3339_ms(e.at), "detail": e.detail,
        })).collect::<Vec<_>>(),
        "timeline": timeline.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    });
    if principal.is_some_and(|p| p.role == Role::Caseworker) {
        body["corrected_documents"] = Value::Array(corrected_documents(&history));
    }
    Ok(axum::Json(body).into_response())
}

/// The corrections of message `id`, oldest first: which message made each
/// and which fields it corrected (pointers only, no values).
fn corrections_of(id: Option<&str>, history: &[CaseMessage]) -> Vec<Value> {
    history
        .iter()
        .filter(|m| is_correction(m) && m.in_reply_to.as_deref() == id && id.is_some())
        .map(|m| {
            let pointers: Vec<&str> = m.payload["corrections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["pointer"].as_str())
                .collect();
            json!({"message_id": m.message_id, "pointers": pointers})
        })
        .collect()
}

/// Each corrected message's payload as sent and as corrected.
fn corrected_documents(history: &[CaseMessage]) -> Vec<Value> {
    history
        .iter()
        .filter_map(|m| {
            corrected_payload(m, history).map(|corrected| {
                json!({
                    "message_id": m.message_id,
                    "type": m.message_type,
                    "original": *m.payload,
                    "corrected": corrected,
                })
            })
        })
        .collect()
}
