//! The peer API, spoken between gateways over mutual TLS 1.3 (the wire
//! contract is `crate::protocol`). A peer is the node its certificate
//! names; what it may send is admission's business
//! (`crate::app::receive`). Storage is idempotent by `message_id`: a resend
//! gets the receipt of the first delivery.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, middleware};
use serde_json::value::RawValue;
use tracing::warn;
use utoipa::ToSchema;
use utoipa::openapi::path::Operation;

use super::error::{ApiError, count_store_failures, read_json_body};
use crate::app::node::Node;
use crate::app::receive::{self, Arrival, Judged};
use crate::http::openapi::{Envelope, example};
use crate::protocol::{
    BATCH_MAX, BATCH_PATH, BatchResponse, BatchResult, ErrorEnvelope, MESSAGES_PATH,
    RECEIPT_SIGNATURE_HEADER, Receipt, SIGNATURE_HEADER,
};
use crate::tls::ConnInfo;

mod reconcile;

pub fn router(node: Arc<Node>) -> Router {
    let limit = node.settings.peer_api.max_body_bytes;
    Router::new()
        .route(MESSAGES_PATH, post(receive_one))
        .route(BATCH_PATH, post(receive_batch))
        .route(crate::protocol::RECONCILE_PATH, post(reconcile::tally))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_route",
                "no such route on the peer API",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route only accepts POST",
            )
        })
        .layer(middleware::from_fn_with_state(
            node.clone(),
            count_store_failures,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            limit.saturating_mul(BATCH_MAX).saturating_add(1),
        ))
        .with_state(node)
}

/// The peer API's operations as the OpenAPI document shows them.
pub fn operations() -> Vec<(String, Operation)> {
    use utoipa::Path;
    vec![
        (__path_receive_one::path(), __path_receive_one::operation()),
        (
            __path_receive_batch::path(),
            __path_receive_batch::operation(),
        ),
        reconcile::operation(),
    ]
}

/// The schemas of the peer API's own bodies.
pub fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<BatchBody>();
    reconcile::schemas(doc);
}

/// Deliver one envelope (peer API).
///
/// Mutual TLS 1.3 with a node certificate. Idempotent by `message_id`: a
/// resend gets the receipt of the first delivery.
#[utoipa::path(
    post, path = "/peer/v1/messages", operation_id = "peerReceive",
    params(("Homeward-Signature" = Option<String>, Header, pattern = "^[A-Za-z0-9_-]+\\.\\.[A-Za-z0-9_-]+$",
        description = "The sender's detached compact JWS (EdDSA, x5c) over the exact body bytes")),
    request_body(content = Envelope, content_type = "application/json",
        description = "A whole envelope: every field of envelope.v1.json, none filled in by the receiver"),
    responses(
        (status = 200, description = "Committed to the receiver's inbox (now or before)", body = Receipt,
            headers(("Homeward-Receipt-Signature" = String,
                description = "The receiver's detached compact JWS over the exact receipt bytes, when it signs")),
            example = json!(example::receipt())),
        (status = 400, description = "Malformed JSON or schema violations, every one listed with its JSON pointer and keyword",
            body = ErrorEnvelope, example = json!(example::schema_violation())),
        (status = 401, description = "The client certificate names no node (no_node_identity)", body = ErrorEnvelope),
        (status = 403, description = "The agreement does not allow this message from this sender (or from its consular mission: not_allowed_for_mission), or its signature does not hold: not over these bytes (bad_signature), not by a document-signing certificate of the sender country's CA (unknown_signer), or naming another node (signer_mismatch)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 409, description = "The case's state does not allow the message, in_reply_to is wrong, or message_id was used for other content", body = ErrorEnvelope),
        (status = 413, description = "Body larger than peer_api.max_body_bytes (body_too_large)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 422, description = "A payload that carries what the agreement withholds when the person did not consent to sharing (consent_violation, details[0].pointer says which field) or an invalid lawful basis (lawful_basis_invalid); wrong sender for this certificate (wrong_sender), a case reference that does not name the two countries (case_ref_mismatch), a schema_version the receiver's copy of the agreement does not use for the type (schema_version_not_agreed, pointer /schema_version, naming the allowed versions), a gate code its copy does not list (unknown_gate, pointer /payload/gate, naming the allowed codes), or a correction that names no message of the case or a field its message does not have; nothing stored", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable); nothing was accepted, retry later", body = ErrorEnvelope),
    ),
)]
async fn receive_one(
    State(node): State<Arc<Node>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = match sender(&node, &conn) {
        Ok(s) => s,
        Err(refused) => return Ok(*refused),
    };
    let (raw, doc) = read_json_body(
        &headers,
        body,
        node.settings.peer_api.max_body_bytes,
        node.settings.peer_api.read_timeout(),
    )
    .await?;
    let text = String::from_utf8(raw.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "body is not UTF-8",
        )
    })?;
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            ApiError::from(crate::domain::admission::Refusal::Signature {
                code: "bad_signature",
                message: "the Homeward-Signature header is not text".into(),
            })
        })?),
    };
    let accepted = receive::receive(
        &node,
        &sender,
        Arrival {
            text,
            doc,
            signature,
        },
    )
    .await??;
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        accepted.receipt,
    )
        .into_response();
    if let Some(jws) = accepted.receipt_signature
        && let Ok(value) = header::HeaderValue::from_str(&jws)
    {
        response
            .headers_mut()
            .insert(RECEIPT_SIGNATURE_HEADER, value);
    }
    Ok(response)
}

/// A batch as sent: each envelope as the exact JSON text the sender stored.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used; the handler reads the text itself
struct BatchBody {
    #[schema(min_items = 1, max_items = 64)]
    messages: Vec<String>,
    /// The sender's detached JWS of each message, in order (null for one
    /// it did not sign); left out when it signs none.
    signatures: Option<Vec<Option<String>>>,
}

/// Deliver up to 64 envelopes at once (peer API).
///
/// Each envelope is the exact JSON text the sender stored (so receipts
/// hash the same bytes), judged on its own terms (idempotent by
/// `message_id`); the accepted ones are committed together.
#[utoipa::path(
    post, path = "/peer/v1/messages/batch", operation_id = "peerReceiveBatch",
    request_body(content = BatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per message, in order", body = BatchResponse,
            example = json!(example::batch_answer())),
        (status = 400, description = "Not a batch of 1 to 64 texts (bad_batch), or not JSON", body = ErrorEnvelope),
        (status = 422, description = "`signatures` does not have one entry per message (bad_batch)", body = ErrorEnvelope),
        (status = 401, description = "The client certificate names no node (no_node_identity)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 413, description = "The body is over the limit (body_too_large)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable); nothing was accepted, retry later", body = ErrorEnvelope),
    ),
)]
async fn receive_batch(
    State(node): State<Arc<Node>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sender = match sender(&node, &conn) {
        Ok(s) => s,
        Err(refused) => return Ok(*refused),
    };
    let item_limit = node.settings.peer_api.max_body_bytes;
    let (_, mut doc) = read_json_body(
        &headers,
        body,
        item_limit.saturating_mul(BATCH_MAX),
        node.settings.peer_api.read_timeout(),
    )
    .await?;
    // Signatures, when sent, pair with the messages by position.
    let mut signatures: Vec<Option<String>> =
        match doc.get_mut("signatures").map(serde_json::Value::take) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(list) => serde_json::from_value(list).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_batch",
                    "`signatures` must be an array of JWS texts or nulls, one per message",
                )
            })?,
        };
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
    // Messages that are not even JSON are answered here; the rest go to
    // the receive service, and their answers back to their places.
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(items.len());
    let mut arrivals = Vec::new();
    let mut slots = Vec::new();
    if !signatures.is_empty() && signatures.len() != items.len() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_batch",
            "`signatures` must have one entry per message",
        ));
    }
    signatures.resize(items.len(), None);
    for (text, signature) in items.into_iter().zip(signatures) {
        let parsed = if text.len() > item_limit {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "message exceeds the size limit",
            ))
        } else {
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("not valid JSON: {e}"),
                )
            })
        };
        match parsed {
            Ok(doc) => {
                slots.push(results.len());
                arrivals.push(Arrival {
                    text,
                    doc,
                    signature,
                });
                results.push(None);
            }
            Err(e) => results.push(Some(refused(e))),
        }
    }
    let n = arrivals.len();
    match receive::receive_many(&node, &sender, arrivals).await {
        Ok(judged) => {
            for (slot, j) in slots.into_iter().zip(judged) {
                results[slot] = Some(answer(j));
            }
        }
        Err(e) => {
            // Nothing of the batch was committed; the sender retries each.
            node.metrics.store_errors.inc();
            warn!(error = %crate::telemetry::error_chain(&e), messages = n, "could not commit a batch to the inbox");
            for slot in slots {
                results[slot] = Some(refused(ApiError::store_unavailable()));
            }
        }
    }
    let body = BatchResponse {
        results: results
            .into_iter()
            .map(|r| r.expect("every message has a result"))
            .collect(),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// One message's answer in a batch.
fn answer(judged: Judged) -> BatchResult {
    match judged {
        Ok(accepted) => match RawValue::from_string(accepted.receipt) {
            Ok(receipt) => BatchResult {
                status: 200,
                receipt: Some(receipt),
                receipt_signature: accepted.receipt_signature,
                error: None,
            },
            // A stored receipt is JSON this node wrote; if it is not, the
            // sender must not count the message delivered.
            Err(_) => refused(ApiError::store_unavailable()),
        },
        Err(refusal) => refused(refusal.into()),
    }
}

fn refused(e: ApiError) -> BatchResult {
    BatchResult {
        status: e.status.as_u16(),
        receipt: None,
        receipt_signature: None,
        error: Some(e.body),
    }
}

/// The node the client certificate names, if it is within its rate;
/// otherwise the answer that refuses it (401, or 429 with `Retry-After`).
pub(super) fn sender(node: &Node, conn: &ConnInfo) -> Result<String, Box<Response>> {
    let sender = identify(conn).map_err(|e| Box::new(e.into_response()))?;
    node.peer_limits
        .check(&sender)
        .map_err(|wait| Box::new(ApiError::too_many(wait)))?;
    Ok(sender)
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
