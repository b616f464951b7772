//! The peer API, spoken between gateways over mutual TLS 1.3. A peer may
//! only send as the node its certificate names, only to this node, only what
//! their agreement allows, and only schema-valid messages. Storage is
//! idempotent by `message_id`: a resend gets the receipt of the first
//! delivery.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, warn};

use crate::api_error::{ApiError, read_json_body};
use crate::clock::rfc3339_ms;
use crate::gateway::{ConnInfo, Node};
use crate::store::timers::Side;
use crate::store::{NewInbound, Received};

pub const MESSAGES_PATH: &str = "/peer/v1/messages";
pub const BATCH_PATH: &str = "/peer/v1/messages/batch";

/// Evidence that the receiver committed a message to its inbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub receiver: String,
    pub received_at: String,
    /// SHA-256 of the envelope bytes as received; the sender checks it
    /// against what it sent.
    pub envelope_sha256: String,
    /// The answer the receiver owes and when, counted in the receiver's
    /// calendar; both sides' timers use this same due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_due: Option<AnswerDue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AnswerDue {
    #[serde(rename = "type")]
    pub message_type: String,
    pub due_at: String,
}

pub fn router(node: Arc<Node>) -> Router {
    let limit = node.settings.peer_api.max_body_bytes;
    Router::new()
        .route(MESSAGES_PATH, post(receive))
        .route(BATCH_PATH, post(receive_batch))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_route",
                "no such route on the peer API",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            limit.saturating_mul(BATCH_MAX).saturating_add(1),
        ))
        .with_state(node)
}

async fn receive(
    State(node): State<Arc<Node>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = identify(&conn)?;
    if let Err(wait) = node.peer_limits.check(&sender) {
        return Ok(crate::ratelimit::too_many(wait));
    }
    let (raw, doc) = read_json_body(&headers, body, node.settings.peer_api.max_body_bytes).await?;
    let new = prepare(&node, &sender, &raw, doc)?;
    let span = tracing::info_span!("receive", message_id = %new.message_id, case_ref = %new.case_ref, peer = %sender);
    let result = node.store.receive(&new).instrument(span.clone()).await;
    let (status, body) = span.in_scope(|| outcome(&node, &new, result));
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `POST /peer/v1/messages/batch`: `{"messages": ["<envelope JSON>", ...]}`
/// (each envelope as the exact text the sender stored, so receipts hash the
/// same bytes). Every message is checked on its own; the accepted ones are
/// committed in one transaction. The answer lists, in order, each message's
/// status and its receipt or error: `{"results": [{"status", "receipt"|"error"}]}`.
async fn receive_batch(
    State(node): State<Arc<Node>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = identify(&conn)?;
    if let Err(wait) = node.peer_limits.check(&sender) {
        return Ok(crate::ratelimit::too_many(wait));
    }
    let limit = node
        .settings
        .peer_api
        .max_body_bytes
        .saturating_mul(BATCH_MAX);
    let (_, mut doc) = read_json_body(&headers, body, limit).await?;
    let items: Vec<String> = doc
        .get_mut("messages")
        .map(serde_json::Value::take)
        .and_then(|m| serde_json::from_value(m).ok())
        .filter(|m: &Vec<String>| !m.is_empty() && m.len() <= BATCH_MAX)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_batch",
                format!(
                    "expected {{\"messages\": [1 to {BATCH_MAX} envelopes, each as JSON text]}}"
                ),
            )
        })?;
    let mut results: Vec<Option<(StatusCode, String)>> = Vec::with_capacity(items.len());
    // The accepted messages, and where each one's answer goes in `results`.
    let mut accepted: Vec<NewInbound> = Vec::new();
    let mut slots = Vec::new();
    for text in &items {
        let prepared = if text.len() > node.settings.peer_api.max_body_bytes {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "message exceeds the size limit",
            ))
        } else {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        format!("not valid JSON: {e}"),
                    )
                })
                .and_then(|doc| prepare(&node, &sender, text.as_bytes(), doc))
        };
        match prepared {
            Ok(new) => {
                slots.push(results.len());
                accepted.push(new);
                results.push(None);
            }
            Err(e) => results.push(Some((e.status, error_text(&e)))),
        }
    }
    match node.store.receive_many(&accepted).await {
        Ok(stored) => {
            for ((i, new), one) in slots.iter().zip(&accepted).zip(stored) {
                let span = tracing::info_span!("receive", message_id = %new.message_id, case_ref = %new.case_ref, peer = %sender);
                results[*i] = Some(span.in_scope(|| outcome(&node, new, Ok(one))));
            }
        }
        Err(e) => {
            // Nothing of the batch was committed; the sender retries each.
            crate::metrics::Metrics::inc(&node.metrics.store_errors);
            warn!(error = %e, "could not commit a batch to the inbox");
            for i in &slots {
                let e = ApiError::internal();
                results[*i] = Some((e.status, error_text(&e)));
            }
        }
    }
    let parts: Vec<String> = results
        .into_iter()
        .map(|r| {
            let (status, body) = r.expect("every message has a result");
            let key = if status.is_success() {
                "receipt"
            } else {
                "error"
            };
            let inner = if status.is_success() {
                body
            } else {
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .map(|v| v["error"].to_string())
                    .unwrap_or(body)
            };
            format!("{{\"status\":{},\"{key}\":{inner}}}", status.as_u16())
        })
        .collect();
    let body = format!("{{\"results\":[{}]}}", parts.join(","));
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// Most messages in one batch.
pub const BATCH_MAX: usize = 64;

fn error_text(e: &ApiError) -> String {
    serde_json::to_string(&crate::api_error::ErrorEnvelope {
        error: e.body.clone(),
    })
    .unwrap_or_default()
}

fn identify(conn: &ConnInfo) -> Result<String, ApiError> {
    conn.node.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no_node_identity",
            "the client certificate carries no urn:homeward:node URI",
        )
    })
}

/// Checks one envelope from `sender` (schema, sender identity, receiver,
/// case parties, agreement) and builds what the store commits.
fn prepare(
    node: &Node,
    sender: &str,
    raw: &[u8],
    doc: serde_json::Value,
) -> Result<NewInbound, ApiError> {
    let envelope = node.registry.validate_owned(doc).map_err(|e| {
        info!(peer = %sender, code = e.code(), "refused an invalid message from a peer");
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()).with_details(e.details())
    })?;
    if envelope.from != sender {
        warn!(peer = %sender, claimed = %envelope.from, message_id = %envelope.message_id, case_ref = %envelope.case_ref,
              "peer sent a message under another node's name");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sender_mismatch",
            format!(
                "the client certificate identifies node {sender}, but the envelope says from {}",
                envelope.from
            ),
        ));
    }
    if envelope.to != node.country {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_receiver",
            format!(
                "this gateway is {}, the message is for {}",
                node.country, envelope.to
            ),
        ));
    }
    crate::local_api::check_case_parties(&envelope)?;
    crate::local_api::check_agreement(node, &envelope)?;
    let body = String::from_utf8(raw.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "body is not UTF-8",
        )
    })?;
    let body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
    let now = node.clock.now_ms();
    let timer = crate::timers::timer_for(
        node,
        Side::AnswerDue,
        &envelope.case_ref,
        &envelope.message_id.to_string(),
        &envelope.message_type,
        envelope.in_reply_to.is_some(),
        sender,
        now,
        None,
    );
    let receipt = Receipt {
        message_id: envelope.message_id.to_string(),
        receiver: node.country.clone(),
        received_at: rfc3339_ms(now),
        envelope_sha256: body_sha256.clone(),
        answer_due: timer.as_ref().map(|t| AnswerDue {
            message_type: t.expected_type.clone(),
            due_at: rfc3339_ms(t.due_at),
        }),
    };
    Ok(NewInbound {
        message_id: envelope.message_id.to_string(),
        case_ref: envelope.case_ref.clone(),
        sender: sender.to_string(),
        message_type: envelope.message_type.clone(),
        in_reply_to: envelope.in_reply_to.map(|u| u.to_string()),
        body,
        body_sha256,
        received_at: now,
        receipt: serde_json::to_string(&receipt).map_err(|_| ApiError::internal())?,
        case_message: crate::local_api::case_message(&envelope),
        timer,
    })
}

/// The HTTP status and JSON text answering one stored (or refused) message.
fn outcome(
    node: &Node,
    new: &NewInbound,
    result: Result<Received, crate::store::StoreError>,
) -> (StatusCode, String) {
    let refusal = |e: ApiError| (e.status, error_text(&e));
    match result {
        Ok(Received::Stored { receipt, fresh }) => {
            if fresh {
                info!(message_type = %new.message_type, "received");
                crate::metrics::Metrics::inc(&node.metrics.received);
                node.timer_wake
                    .opened(new.timer.as_ref().and_then(|t| t.first_event_at));
            }
            (StatusCode::OK, receipt)
        }
        Ok(Received::Refused(e)) => {
            info!(
                code = e.code(),
                "refused a message the case's state does not allow"
            );
            refusal(crate::local_api::lifecycle_refusal(&e))
        }
        Ok(Received::Conflict) => refusal(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate_message_id",
            format!(
                "message {} was already received with different content",
                new.message_id
            ),
        )),
        Err(e) => {
            crate::metrics::Metrics::inc(&node.metrics.store_errors);
            warn!(error = %e, "could not commit to the inbox");
            refusal(ApiError::internal())
        }
    }
}
