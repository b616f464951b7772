//! Outbox operations: re-queueing a message that is `dead` or `rejected`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::access::{AuditTrail, Routes};
use super::params;
use super::views::{DeliveryState, Requeued};
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::http::openapi::example;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        __path_retry_message,
        &[Admin],
        Some("message.retry"),
        retry_message,
    )
}

/// Re-queue a `dead` or `rejected` message, with a fresh delivery deadline.
#[utoipa::path(
    post, path = "/v1/outbox/{id}/retry", operation_id = "retryMessage",
    params(("id" = String, Path, format = Uuid, description = "The message_id")),
    responses(
        (status = 202, description = "Queued again", body = Requeued,
            example = json!({"message_id": example::ID, "state": "queued"})),
        (status = 400, description = "The id is not a UUID (bad_message_id)", body = ErrorEnvelope),
        (status = 404, description = "No outbound message with this id (not_found)", body = ErrorEnvelope),
        (status = 409, description = "The message is neither dead nor rejected (not_retryable)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
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
        axum::Json(Requeued {
            message_id: id,
            state: DeliveryState::Queued,
        }),
    )
        .into_response())
}
