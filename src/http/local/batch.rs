//! Batch submission, `POST /v1/messages/batch`: many messages in one
//! request, each judged exactly as `POST /v1/messages` judges one, the
//! accepted ones committed in one transaction, and one answer per message.
//! For deportation screening (tens of thousands of people a year at one
//! border gate) and for migrating years of paper cases.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::access::{AuditTrail, Routes};
use super::views::{
    Accepted, MessageBatchAccepted, MessageBatchRefused, MessageBatchResult, MessageBatchResults,
};
use crate::app::node::Node;
use crate::app::submit::{self, LOCAL_BATCH_MAX};
use crate::domain::access::Principal;
use crate::domain::access::Role::*;
use crate::domain::officer::OfficerId;
use crate::http::error::{ApiError, Detail, malformed_json, read_json_bytes};
use crate::http::openapi::{SubmittedEnvelope, example};
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        __path_submit_batch,
        &[Caseworker, Embassy],
        Some("message.submit"),
        submit_batch,
    )
}

/// A batch submission: the envelopes, in order.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only its schema is used; the handler reads the body itself
pub struct MessageBatch {
    /// 1 to 500 envelopes, each as `POST /v1/messages` takes one.
    #[schema(min_items = 1, max_items = 500)]
    messages: Vec<SubmittedEnvelope>,
}

/// Submit up to 500 messages at once.
///
/// Each message is judged on its own exactly as `POST /v1/messages` judges
/// one (the same defaults, refusals, consent rule and `On-Behalf-Of`
/// rule), in order: a message sees the batch's earlier accepted ones, so a
/// case's `referral.notify` and its `referral.update` may come in one
/// batch. The accepted ones are committed together (one transaction); the
/// answer is 200 with one result per message, in order, `index` being its
/// position in `messages` (from 0): `status` 202 with the single route's
/// 202 body (`withheld` included), or the status the single route would
/// have answered with its `error` body (the JSON pointers of `details`
/// point into that message). A message resubmitted identically, in another
/// batch or twice in this one, is a 202 stored once; the same `message_id`
/// with other content is a 409 `duplicate_message_id`. Each accepted
/// message gets its own audit record, each refused one too.
#[utoipa::path(
    post, path = "/v1/messages/batch", operation_id = "submitMessageBatch",
    request_body(content = MessageBatch, content_type = "application/json",
        example = json!(example::message_batch())),
    responses(
        (status = 200, description = "One result per message, in order: 202 (committed now, or before for a resubmission) or the refusal the single route would have given; a message over local_api.max_body_bytes is refused on its own (413 body_too_large)",
            body = MessageBatchResults, example = json!(example::message_batch_results())),
        (status = 400, description = "Not JSON (malformed_json), or not {\"messages\": [1 to 500 envelopes]} (bad_batch: not an object or an unknown field, details[0].pointer \"\" (the body); no messages array, no message or more than 500, details[0].pointer /messages, keyword type, required, minItems or maxItems)",
            body = ErrorEnvelope, example = json!(example::bad_batch())),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 413, description = "Body larger than local_api.max_batch_bytes (body_too_large); nothing was accepted", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable); nothing of the batch was accepted, retry it", body = ErrorEnvelope),
    ),
)]
async fn submit_batch(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    officer: Option<axum::Extension<OfficerId>>,
    trail: AuditTrail,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let settings = &node.settings.local_api;
    let bytes = read_json_bytes(
        &headers,
        body,
        settings.max_batch_bytes(),
        settings.read_timeout(),
    )
    .await?;
    let messages = messages_of(&bytes)?;
    let n = messages.len();
    if n == 0 {
        return Err(bad_batch(
            "/messages",
            "minItems",
            "no message in the batch".into(),
        ));
    }
    if n > LOCAL_BATCH_MAX {
        return Err(bad_batch(
            "/messages",
            "maxItems",
            format!("{n} messages; at most {LOCAL_BATCH_MAX} in one batch: split it"),
        ));
    }
    // A message over the single route's limit is refused here, as that
    // route would; the others go to the submit service, and their answers
    // back to their places.
    let mut results: Vec<Option<MessageBatchResult>> = Vec::with_capacity(n);
    let mut docs = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    let mut named = Vec::with_capacity(n);
    let mut early = Vec::new();
    for (index, raw) in messages.into_iter().enumerate() {
        let parsed = if raw.get().len() > settings.max_body_bytes {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the message exceeds local_api.max_body_bytes ({} bytes)",
                    settings.max_body_bytes
                ),
            ))
        } else {
            // Its syntax held in the body; what fails here is its depth.
            serde_json::from_str::<Value>(raw.get()).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the message is not valid JSON: {e}"),
                )
            })
        };
        match parsed {
            Ok(doc) => {
                named.push(Named::of(&doc));
                slots.push(index);
                docs.push(doc);
                results.push(None);
            }
            Err(e) => {
                early.push(e.status);
                results.push(Some(refused(index, e)));
            }
        }
    }
    let judged =
        submit::submit_batch(&node, principal.map(|p| p.0), officer.map(|o| o.0), docs).await?;
    // Audited once the batch is answered (on a store failure the caller
    // gets the 503 instead, audited as such, and never sees these).
    for status in early {
        trail.settled(None, None, status);
    }
    let mut written = false;
    for ((index, judged), named) in slots.into_iter().zip(judged).zip(named) {
        results[index] = Some(match judged {
            Ok(submitted) => {
                if submitted.audited {
                    written = true;
                } else {
                    // A resubmission: recorded as the single route's guard
                    // records one.
                    trail.settled(
                        Some(&submitted.row.case_ref),
                        Some(&submitted.row.message_id),
                        StatusCode::ACCEPTED,
                    );
                }
                MessageBatchResult::Accepted(MessageBatchAccepted {
                    index,
                    status: StatusCode::ACCEPTED.as_u16(),
                    accepted: Accepted::from(submitted),
                })
            }
            Err(refusal) => {
                let e = ApiError::from(refusal);
                trail.settled(
                    named.case_ref.as_deref(),
                    named.message_id.as_deref(),
                    e.status,
                );
                refused(index, e)
            }
        });
    }
    if written {
        trail.written();
    }
    let answer = MessageBatchResults {
        results: results
            .into_iter()
            .map(|r| r.expect("every message has a result"))
            .collect(),
    };
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// The case and message a refused message named, for its audit record:
/// only values of an identifier's shape (a refused message may carry
/// anything in those fields).
struct Named {
    case_ref: Option<String>,
    message_id: Option<String>,
}

impl Named {
    fn of(doc: &Value) -> Self {
        Self {
            case_ref: doc["case_ref"]
                .as_str()
                .filter(|c| is_case_ref(c))
                .map(str::to_string),
            message_id: doc["message_id"]
                .as_str()
                .and_then(|m| uuid::Uuid::parse_str(m).ok())
                .map(|u| u.to_string()),
        }
    }
}

/// `<CC>-<CC>-<YYYY>-<serial>`, the envelope schema's `case_ref` pattern.
fn is_case_ref(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i {
            0 | 1 | 3 | 4 => c.is_ascii_uppercase(),
            2 | 5 | 10 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn refused(index: usize, e: ApiError) -> MessageBatchResult {
    MessageBatchResult::Refused(MessageBatchRefused {
        index,
        status: e.status.as_u16(),
        error: e.body,
    })
}

/// The messages of a batch body, each as its text (so its own size can be
/// held to `local_api.max_body_bytes`, as the single route's body is); a
/// body that is not a batch is refused naming where it is wrong.
fn messages_of(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let not_data = |e: serde_json::Error| (!e.is_data()).then(|| malformed_json(e));
    let top: BTreeMap<String, &RawValue> = serde_json::from_slice(body).map_err(|e| {
        not_data(e).unwrap_or_else(|| bad_batch("", "type", "the body is not an object".into()))
    })?;
    if let Some(key) = top.keys().find(|k| *k != "messages") {
        return Err(bad_batch(
            "",
            "additionalProperties",
            format!("unknown field `{key}`"),
        ));
    }
    let Some(messages) = top.get("messages") else {
        return Err(bad_batch("/messages", "required", "no `messages`".into()));
    };
    serde_json::from_str(messages.get()).map_err(|e| {
        not_data(e)
            .unwrap_or_else(|| bad_batch("/messages", "type", "`messages` is not an array".into()))
    })
}

/// The request is not a batch of 1 to [`LOCAL_BATCH_MAX`] messages:
/// `pointer` says where (`""`: the whole body).
fn bad_batch(pointer: &str, keyword: &str, why: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_batch",
        format!("expected {{\"messages\": [1 to {LOCAL_BATCH_MAX} envelopes]}}: {why}"),
    )
    .with_details(vec![Detail::at(pointer, keyword, why)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_refs_of_the_envelope_shape_only() {
        assert!(is_case_ref("TH-KH-2026-000042"));
        for bad in [
            "",
            "TH-KH-2026-00004",
            "th-KH-2026-000042",
            "TH-KH-2026-0000420",
            "TH_KH-2026-000042",
            "TH-KH-2026-00004x",
            "ТH-KH-2026-000042",
        ] {
            assert!(!is_case_ref(bad), "{bad}");
        }
    }
}
