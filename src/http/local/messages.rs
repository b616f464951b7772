//! Messages this node's systems send: submission, where a message stands,
//! and validation without sending.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::access::{AuditTrail, Routes};
use super::params;
use super::views::{Accepted, MessageStatus, ValidationReport};
use crate::app::node::Node;
use crate::app::submit::{self, SubmitError};
use crate::domain::access::Principal;
use crate::domain::access::Role::*;
use crate::domain::officer::OfficerId;
use crate::http::error::{ApiError, read_json_body};
use crate::http::openapi::{SubmittedEnvelope, example};
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            __path_submit_message,
            &[Caseworker, Embassy],
            Some("message.submit"),
            submit_message,
        )
        .route(
            __path_message_status,
            &[Caseworker, Operator, Admin],
            Some("message.read"),
            message_status,
        )
        .route(__path_validate, &[Integrator, Caseworker], None, validate)
}

/// Submit a message.
///
/// A 202 means it is on disk and will be delivered.
/// The gateway fills in `message_id`, `created_at`, `from` and
/// `in_reply_to` when they are left out. A resubmission of the same
/// message (same `message_id`, same content) gets the same 202; the same id
/// with other content is refused (409).
#[utoipa::path(
    post, path = "/v1/messages", operation_id = "submitMessage",
    request_body(content = SubmittedEnvelope, content_type = "application/json",
        example = json!(example::envelope())),
    responses(
        (status = 202, description = "Accepted (also for an identical resubmission); `withheld` lists the payload fields taken out for want of consent", body = Accepted,
            example = json!(example::accepted())),
        (status = 400, description = "Malformed JSON or schema violations, every one listed with its JSON pointer and keyword; or no On-Behalf-Of header where the agreement with the receiving country requires the officer (officer_required, naming the agreement)",
            body = ErrorEnvelope, example = json!(example::schema_violation())),
        (status = 403, description = "Role not allowed, or the agreement with the receiving country does not allow this message (agreement_refused), or not from a consular mission (not_allowed_for_mission: an embassy sends only what the agreement's embassy_may_send names)", body = ErrorEnvelope),
        (status = 404, description = "An embassy submitting to a case not of the nationals it serves: as if there were none (not_found)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 409, description = "The case's state does not allow the message, in_reply_to is wrong, or message_id was used for other content", body = ErrorEnvelope),
        (status = 413, description = "Body larger than local_api.max_body_bytes (body_too_large)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 422, description = "sent_by given (sent_by_reserved: the gateway sets it); the person did not consent to sharing and the agreement sends nothing without consent (consent_withheld), or the declared consent.lawful_basis is not one the agreement names or does not hold (lawful_basis_invalid); wrong sender (wrong_sender), unknown peer (unknown_peer), a case reference that does not name the two countries (case_ref_mismatch), a schema_version the agreement does not use for the type (schema_version_not_agreed, pointer /schema_version, naming the agreement and its versions), a gate code the agreement does not list in its gates (unknown_gate, pointer /payload/gate, naming the agreement and its codes), or a correction (referral.update, reason correction) that names no message (correction_target_required), a message of another case (correction_target_unknown) or a field its message does not have (correction_pointer_absent); details[0].pointer says where", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable); nothing was accepted, retry later", body = ErrorEnvelope),
    ),
)]
async fn submit_message(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    officer: Option<axum::Extension<OfficerId>>,
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
    let officer = officer.map(|o| o.0);
    let submitted = submit::submit(&node, principal.as_ref(), officer.as_ref(), doc)
        .await
        .map_err(|e| match e {
            SubmitError::Refused(r) => ApiError::from(r),
            SubmitError::Store(e) => ApiError::from(e),
        })?;
    trail.touched(&submitted.row.case_ref, Some(&submitted.row.message_id));
    if submitted.audited {
        trail.written();
    }
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted::from(submitted))).into_response())
}

/// Where a message stands, sent or received.
#[utoipa::path(
    get, path = "/v1/messages/{id}", operation_id = "getMessage",
    params(("id" = String, Path, format = Uuid, description = "The message_id")),
    responses(
        (status = 200, description = "The message", body = MessageStatus, example = json!(example::outbound_status())),
        (status = 400, description = "The id is not a UUID (bad_message_id)", body = ErrorEnvelope),
        (status = 404, description = "No message with this id here (not_found)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn message_status(
    State(node): State<Arc<Node>>,
    trail: AuditTrail,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = params::message_id(&id)?;
    let (view, case_ref) = if let Some(row) = node.store.outbound(&id).await? {
        (MessageStatus::from(&row), row.case_ref)
    } else if let Some(row) = node.store.inbound(&id).await? {
        (MessageStatus::from(&row), row.case_ref)
    } else {
        return Err(ApiError::not_found("message"));
    };
    trail.touched(&case_ref, Some(&id));
    Ok(axum::Json(view).into_response())
}

/// Validate a message without sending it.
///
/// The report `homeward validate` prints, for a message as it would be
/// submitted. Nothing is stored or sent; whatever is wrong with the message
/// is in the report, not refused.
#[utoipa::path(
    post, path = "/v1/validate", operation_id = "validateMessage",
    request_body(content = Object, content_type = "application/json",
        description = "Any JSON object: a message as it would be submitted"),
    responses(
        (status = 200, description = "The report", body = ValidationReport,
            example = json!({"valid": false, "violations": [example::violation()]})),
        (status = 400, description = "Not JSON, or not an object (malformed_json, not_an_object)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 413, description = "Body larger than local_api.max_body_bytes (body_too_large)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
    ),
)]
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
    Ok(axum::Json(ValidationReport {
        valid: violations.is_empty(),
        violations,
    })
    .into_response())
}
