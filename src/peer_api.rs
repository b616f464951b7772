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
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_route",
                "no such route on the peer API",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            limit.saturating_add(1),
        ))
        .with_state(node)
}

async fn receive(
    State(node): State<Arc<Node>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(sender) = conn.node else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no_node_identity",
            "the client certificate carries no urn:homeward:node URI",
        ));
    };
    if let Err(wait) = node.peer_limits.check(&sender) {
        return Ok(crate::ratelimit::too_many(wait));
    }
    let (raw, doc) = read_json_body(&headers, body, node.settings.peer_api.max_body_bytes).await?;
    let envelope = node.registry.validate(&doc).map_err(|e| {
        info!(peer = %sender, code = e.code(), "refused an invalid message from a peer");
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()).with_details(e.details())
    })?;
    let span = tracing::info_span!("receive", message_id = %envelope.message_id, case_ref = %envelope.case_ref, peer = %sender);
    async move {
        if envelope.from != sender {
            warn!(claimed = %envelope.from, "peer sent a message under another node's name");
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
                format!("this gateway is {}, the message is for {}", node.country, envelope.to),
            ));
        }
        crate::local_api::check_case_parties(&envelope)?;
        crate::local_api::check_agreement(&node, &envelope)?;
        let body = String::from_utf8(raw.to_vec())
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "body is not UTF-8"))?;
        let body_sha256 = hex::encode(Sha256::digest(body.as_bytes()));
        let now = node.clock.now_ms();
        let timer = crate::timers::timer_for(
            &node,
            Side::AnswerDue,
            &envelope.case_ref,
            &envelope.message_id.to_string(),
            &envelope.message_type,
            envelope.in_reply_to.is_some(),
            &sender,
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
        let new = NewInbound {
            message_id: envelope.message_id.to_string(),
            case_ref: envelope.case_ref.clone(),
            sender: sender.clone(),
            message_type: envelope.message_type.clone(),
            in_reply_to: envelope.in_reply_to.map(|u| u.to_string()),
            body,
            body_sha256,
            received_at: now,
            receipt: serde_json::to_string(&receipt).map_err(|_| ApiError::internal())?,
            case_message: crate::local_api::case_message(&envelope),
            timer,
        };
        match node.store.receive(&new).await {
            Ok(Received::Stored { receipt, fresh }) => {
                if fresh {
                    info!(message_type = %envelope.message_type, "received");
                    crate::metrics::Metrics::inc(&node.metrics.received);
                    node.timer_wake.notify_one();
                }
                Ok((
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    receipt,
                )
                    .into_response())
            }
            Ok(Received::Refused(e)) => {
                info!(code = e.code(), "refused a message the case's state does not allow");
                Err(crate::local_api::lifecycle_refusal(&e))
            }
            Ok(Received::Conflict) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "duplicate_message_id",
                format!(
                    "message {} was already received with different content",
                    envelope.message_id
                ),
            )),
                        Err(e) => {
                crate::metrics::Metrics::inc(&node.metrics.store_errors);
                warn!(error = %e, "could not commit to the inbox");
                Err(ApiError::internal())
            }
        }
    }
    .instrument(span)
    .await
}
