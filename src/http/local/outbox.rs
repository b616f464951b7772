//! Outbox operations: re-queueing a message that is `dead` or `rejected`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tracing::info;

use super::access::{AuditTrail, Routes};
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
    trail: AuditTrail,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = params::message_id(&id)?;
    let Some(row) = node.store.outbound(&id).await? else {
        return Err(ApiError::not_found("message"));
    };
    trail.touched(&row.case_ref, Some(&id));
    let now = node.clock.now_ms();
    if !node
        .store
        .requeue(&id, now, node.delivery_deadline(now))
        .await?
    {
        // Read again: the state may have moved since the first read.
        let state = node
            .store
            .outbound(&id)
            .await?
            .map_or(row.state, |r| r.state);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_retryable",
            format!(
                "message is `{}`; only dead or rejected messages can be re-queued",
                state.as_str()
            ),
        ));
    }
    node.wake.notify_one();
    info!(message_id = %id, "re-queued by an operator");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"message_id": id, "state": "queued"})),
    )
        .into_response())
}
