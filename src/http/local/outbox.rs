//! Outbox operations: re-queueing a message that is `dead` or `rejected`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tracing::info;

use super::access::{Audited, Routes};
use super::params;
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        Method::POST,
        "/v1/outbox/{id}/retry",
        &[Admin],
        Some("message.retry"),
        post(retry_message),
    )
}

/// `POST /v1/outbox/{id}/retry`: re-queue a `dead` or `rejected` message.
async fn retry_message(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = params::message_id(&id)?;
    let now = node.clock.now_ms();
    let deadline = node.delivery_deadline(now);
    if node.store.requeue(&id, now, deadline).await? {
        node.wake.notify_one();
        info!(message_id = %id, "re-queued by an operator");
        let case_ref = node
            .store
            .outbound(&id)
            .await
            .ok()
            .flatten()
            .map(|r| r.case_ref)
            .unwrap_or_default();
        let mut resp = (
            StatusCode::ACCEPTED,
            axum::Json(json!({"message_id": id, "state": "queued"})),
        )
            .into_response();
        resp.extensions_mut()
            .insert(Audited(vec![(case_ref, Some(id))]));
        return Ok(resp);
    }
    match node.store.outbound(&id).await? {
        None => Err(ApiError::not_found("message")),
        Some(row) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_retryable",
            format!(
                "message is `{}`; only dead or rejected messages can be re-queued",
                row.state.as_str()
            ),
        )),
    }
}
