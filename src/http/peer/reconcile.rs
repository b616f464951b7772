//! `POST /peer/v1/reconcile`: this node's tally of its corridor with the
//! calling peer, signed, so the peer can compare its own count with it
//! (`app::reconcile`). Message ids only: nothing personal crosses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;

use crate::app::node::Node;
use crate::app::reconcile::{self, MAX_EXPAND, TallyError};
use crate::domain::reconcile::ReconcileRequest;
use crate::domain::reconcile::Tally;
use crate::http::error::{ApiError, Detail, read_json_body};
use crate::protocol::{ErrorEnvelope, SIGNATURE_HEADER};
use crate::signing::Purpose;
use crate::tls::ConnInfo;

pub(super) fn operation() -> (String, Operation) {
    use utoipa::Path;
    (__path_tally::path(), __path_tally::operation())
}

pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<ReconcileRequest>();
    doc.schema::<Tally>();
}

/// Largest reconciliation request: a thousand cells to expand.
const MAX_BODY: usize = 256 * 1024;

fn bad(message: impl Into<String>, keyword: &str) -> ApiError {
    let message = message.into();
    ApiError::new(StatusCode::BAD_REQUEST, "bad_reconcile", message.clone()).with_details(vec![
        Detail {
            pointer: None,
            keyword: Some(keyword.to_string()),
            message,
        },
    ])
}

/// This node's tally of the corridor with the caller (peer API).
///
/// Per month and message type, over the period: how many messages of the
/// corridor this node holds and the SHA-256 of their ids, sorted, one per
/// line; for the cells named in `expand`, the ids themselves. Signed by
/// this node (`Homeward-Signature`, typ `homeward-reconcile+jws`) when it
/// signs.
#[utoipa::path(
    post, path = "/peer/v1/reconcile", operation_id = "peerReconcile",
    request_body(content = ReconcileRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "This node's tally", body = Tally,
            headers(("Homeward-Signature" = String,
                description = "This node's detached compact JWS over the exact body bytes, when it signs")),
            example = json!({"node": "KH", "corridor": "KH-TH", "from": "2026-01-01", "to": "2026-12-31",
                "cells": [{"month": "2026-03", "type": "referral.notify", "count": 14,
                    "digest": "9f2c0d4f6a3b5e7d8c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70"}]})),
        (status = 400, description = "Not a reconciliation request, or a bad period (bad_reconcile, details[0].keyword names the field)", body = ErrorEnvelope),
        (status = 401, description = "The client certificate names no node (no_node_identity)", body = ErrorEnvelope),
        (status = 403, description = "No agreement between this node and the caller (no_agreement)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 413, description = "The body is over the limit (body_too_large)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
pub(super) async fn tally(
    State(node): State<Arc<Node>>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let peer = match super::sender(&node, &conn) {
        Ok(s) => s,
        Err(refused) => return Ok(*refused),
    };
    if node.agreements().between(&node.country, &peer).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_agreement",
            format!(
                "no agreement between {} and {peer}: there is no corridor to reconcile",
                node.country
            ),
        ));
    }
    let (_, doc) = read_json_body(
        &headers,
        body,
        MAX_BODY,
        node.settings.peer_api.read_timeout(),
    )
    .await?;
    let request: ReconcileRequest = serde_json::from_value(doc)
        .map_err(|e| bad(format!("not a reconciliation request: {e}"), "body"))?;
    if request.expand.len() > MAX_EXPAND {
        return Err(bad(
            format!("at most {MAX_EXPAND} cells may be expanded at once"),
            "expand",
        ));
    }
    let tally = reconcile::tally(&node.store, &node.country, &peer, &request)
        .await
        .map_err(|e| match e {
            TallyError::Query(q) => bad(q.to_string(), q.parameter),
            TallyError::Store(s) => ApiError::from(s),
        })?;
    let text = serde_json::to_string(&tally).expect("a tally serializes");
    let signature = node
        .credentials()
        .signer
        .as_ref()
        .map(|s| s.sign(Purpose::Reconcile, text.as_bytes()));
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response();
    if let Some(jws) = signature
        && let Ok(value) = HeaderValue::from_str(&jws)
    {
        response.headers_mut().insert(SIGNATURE_HEADER, value);
    }
    Ok(response)
}
