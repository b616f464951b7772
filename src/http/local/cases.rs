//! A case as this node knows it: its state, what may come next, its
//! timers and events, and every message it sent or received, in time
//! order. No payloads, except the corrected documents a caseworker reads.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::access::Routes;
use super::views::{CaseEvent, CorrectionRef, MessageStatus, Timer};
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Principal;
use crate::domain::access::Role::{self, *};
use crate::domain::admission::{corrected_payload, is_correction};
use crate::domain::consent;
use crate::domain::lifecycle::{self, CaseMessage, CaseState};
use crate::http::error::ApiError;
use crate::http::openapi::example;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        __path_case_timeline,
        &[Caseworker, Embassy, Operator],
        Some("case.read"),
        case_timeline,
    )
}

/// The schemas of this module's answers.
pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<CaseView>();
}

/// A case as this node knows it.
#[derive(Debug, Serialize, ToSchema)]
struct CaseView {
    case_ref: String,
    node: String,
    /// The state the case's messages lead to; null if they lead nowhere
    /// (a case that has not started).
    #[schema(value_type = Option<CaseStateDoc>)]
    state: Option<CaseState>,
    /// The message types that may come next.
    allowed_next: Vec<&'static str>,
    timers: Vec<Timer>,
    events: Vec<CaseEvent>,
    /// Every message of the case this node sent or received, in time order.
    timeline: Vec<MessageStatus>,
    /// While the person's consent to sharing stands withheld or withdrawn:
    /// since when (the message that said so). Later messages of the case
    /// cross only as the agreement allows without consent.
    #[schema(format = DateTime)]
    consent_withheld_since: Option<String>,
    /// Caseworker role only: each corrected message's payload as sent
    /// (kept unchanged) and with every correction applied in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    corrected_documents: Option<Vec<CorrectedDocument>>,
}

/// The lifecycle states of a case (`domain::lifecycle::CaseState`).
#[derive(Serialize, ToSchema)]
#[schema(as = CaseState)]
#[allow(dead_code)] // only its schema is used
#[serde(rename_all = "snake_case")]
pub(super) enum CaseStateDoc {
    Referred,
    Acknowledged,
    Tracing,
    Traced,
    RepatriationProposed,
    RepatriationAgreed,
    HandedOver,
    FollowingUp,
    Closed,
    Withdrawn,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CorrectedDocument {
    #[schema(format = Uuid)]
    message_id: String,
    #[serde(rename = "type")]
    message_type: String,
    #[schema(value_type = Object)]
    original: Value,
    #[schema(value_type = Object)]
    corrected: Value,
}

/// A case as this node knows it.
///
/// Its state, what may come next, its timers and events, and every message
/// this node sent or received for it, in time order, with delivery state
/// and receipts. No payloads: a message a later `referral.update` corrected
/// lists those corrections by pointer; a caseworker also gets each
/// corrected document beside the original as it was sent.
#[utoipa::path(
    get, path = "/v1/cases/{case_ref}", operation_id = "getCase",
    params(("case_ref" = String, Path, description = "The case reference, e.g. TH-KH-2026-000042")),
    responses(
        (status = 200, description = "The case", body = CaseView, example = json!(example::case_view())),
        (status = 404, description = "No message of this case here, or (to an embassy) the case of another country's national (not_found)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn case_timeline(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    Path(case_ref): Path<String>,
) -> Result<Response, ApiError> {
    // An embassy must not learn that another country's national's case
    // exists: the same 404 as for no case at all.
    if principal
        .as_ref()
        .is_some_and(|p| !p.may_see_case(&case_ref))
    {
        return Err(ApiError::not_found("case"));
    }
    let (out, inb) = node.store.case_messages(&case_ref).await?;
    if out.is_empty() && inb.is_empty() {
        return Err(ApiError::not_found("case"));
    }
    let mut timeline: Vec<(i64, MessageStatus)> = out
        .iter()
        .map(|r| (r.submitted_at, MessageStatus::from(r)))
        .chain(inb.iter().map(|r| (r.received_at, MessageStatus::from(r))))
        .collect();
    timeline.sort_by_key(|(at, _)| *at);
    let history = node.store.case_history(&case_ref).await?;
    let state = lifecycle::replay(&case_ref, &history);
    for (_, view) in &mut timeline {
        let corrections = corrections_of(view.message_id(), &history);
        view.set_corrected_by(corrections);
        let from_mission = history
            .iter()
            .any(|m| m.message_id == view.message_id() && m.from_mission);
        view.set_from_mission(from_mission);
    }
    let consent_withheld_since = consent::case_withheld(&history)
        .then(|| {
            history
                .iter()
                .rev()
                .find(|m| consent::stated(&m.payload).is_some())
                .and_then(|m| {
                    out.iter()
                        .find(|r| r.message_id == m.message_id)
                        .map(|r| r.submitted_at)
                        .or_else(|| {
                            inb.iter()
                                .find(|r| r.message_id == m.message_id)
                                .map(|r| r.received_at)
                        })
                })
                .map(rfc3339_ms)
        })
        .flatten();
    let timers = node.store.case_timers(&case_ref).await?;
    let events = node.store.case_events(&case_ref).await?;
    let corrected_documents = principal
        .is_some_and(|p| p.role == Role::Caseworker)
        .then(|| corrected_documents(&history));
    Ok(axum::Json(CaseView {
        node: node.country.clone(),
        state,
        allowed_next: lifecycle::allowed_next(state),
        timers: timers.iter().map(Timer::from).collect(),
        events: events.iter().map(CaseEvent::from).collect(),
        timeline: timeline.into_iter().map(|(_, v)| v).collect(),
        corrected_documents,
        consent_withheld_since,
        case_ref,
    })
    .into_response())
}

/// The corrections of message `id`, oldest first: which message made each
/// and which fields it corrected (pointers only, no values).
fn corrections_of(id: &str, history: &[CaseMessage]) -> Vec<CorrectionRef> {
    history
        .iter()
        .filter(|m| is_correction(m) && m.in_reply_to.as_deref() == Some(id))
        .map(|m| CorrectionRef {
            message_id: m.message_id.clone(),
            pointers: m.payload["corrections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["pointer"].as_str().map(str::to_string))
                .collect(),
        })
        .collect()
}

/// Each corrected message's payload as sent and as corrected.
fn corrected_documents(history: &[CaseMessage]) -> Vec<CorrectedDocument> {
    history
        .iter()
        .filter_map(|m| {
            corrected_payload(m, history).map(|corrected| CorrectedDocument {
                message_id: m.message_id.clone(),
                message_type: m.message_type.clone(),
                original: (*m.payload).clone(),
                corrected,
            })
        })
        .collect()
}
