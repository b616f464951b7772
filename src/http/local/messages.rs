//! Messages this node's systems send: submission, where a message stands,
//! and validation without sending.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use super::access::{AuditTrail, Routes};
use super::params;
use super::views::{inbound_view, outbound_view};
use crate::app::node::Node;
use crate::app::submit::{self, SubmitError};
use crate::domain::access::Principal;
use crate::domain::access::Role::*;
use crate::http::error::{ApiError, read_json_body};

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            Method::POST,
            "/v1/messages",
            &[Caseworker],
            Some("message.submit"),
            post(submit_message),
        )
        .route(
            Method::GET,
            "/v1/messages/{id}",
            &[Caseworker, Operator, Admin],
            Some("message.read"),
            get(message_status),
        )
        .route(
            Method::POST,
            "/v1/validate",
            &[Integrator, Caseworker],
            None,
            post(validate),
        )
}

#[derive(Serialize)]
struct Accepted {
    message_id: String,
    case_ref: String,
    state: &'static str,
    status_url: String,
}

/// `POST /v1/messages`: admit and commit to the outbox. A 202 means the
/// message is on disk and will be delivered.
async fn submit_message(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    trail: AuditTrail,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, doc) = read_json_body(
        &headers,
        body,
        node.settings.local_api.max_body_bytes,
        node.settings.local_api.read_timeout(),
    )
    .await?;
    let principal = principal.map(|p| p.0);
    let submitted = submit::submit(&node, principal.as_ref(), doc)
        .await
        .map_err(|e| match e {
            SubmitError::Refused(r) => ApiError::from(r),
            SubmitError::Store(e) => ApiError::from(e),
        })?;
    let row = submitted.row;
    trail.touched(&row.case_ref, Some(&row.message_id));
    if submitted.audited {
        trail.written();
    }
    let accepted = Accepted {
        status_url: format!("/v1/messages/{}", row.message_id),
        message_id: row.message_id,
        case_ref: row.case_ref,
        state: row.state.as_str(),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response())
}

/// `GET /v1/messages/{id}`: where a message stands.
async fn message_status(
    State(node): State<Arc<Node>>,
    trail: AuditTrail,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = params::message_id(&id)?;
    let (view, case_ref) = if let Some(row) = node.store.outbound(&id).await? {
        (outbound_view(&row), row.case_ref)
    } else if let Some(row) = node.store.inbound(&id).await? {
        (inbound_view(&row), row.case_ref)
    } else {
        return Err(ApiError::not_found("message"));
    };
    trail.touched(&case_ref, Some(&id));
    Ok(axum::Json(view).into_response())
}

/// `POST /v1/validate`: the report `homeward validate` prints, for a message
/// as this node would receive it for submission. Nothing is stored or sent.
async fn validate(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, mut doc) = read_json_body(
        &headers,
        body,
        node.settings.local_api.max_body_bytes,
        node.settings.local_api.read_timeout(),
    )
    .await?;
    if !doc.is_object() {
        return Err(crate::domain::admission::Refusal::NotAnObject.into());
    }
    submit::fill_defaults(&node, &mut doc);
    let violations = node.admission().problems(&doc);
    Ok(
        axum::Json(json!({ "valid": violations.is_empty(), "violations": violations }))
            .into_response(),
    )
}
