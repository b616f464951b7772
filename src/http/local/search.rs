//! Finding a case: by its reference, by the receiver's case number, or by
//! an identity document's number. A body, not a query string, so that a
//! document number never sits in a URL or an access log; numbers are
//! looked up through keyed hashes. An embassy finds only its own
//! nationals' cases. Every search is audited, with each case it found.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::access::{AuditTrail, Routes};
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Principal;
use crate::domain::access::Role::*;
use crate::domain::lifecycle::{self, CaseState};
use crate::domain::search::SearchQuery;
use crate::http::error::{ApiError, Detail, read_json_body};
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        __path_search_cases,
        &[Caseworker, Embassy],
        Some("case.search"),
        search_cases,
    )
}

/// The schemas of this module's answers.
pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<SearchPage>()
        .schema::<CaseSummary>()
        .schema::<SearchRequest>()
        .raw_schema("SearchRequest", search_request_schema());
}

/// The search body: exactly one of `case_ref`, `receiver_case_number` or
/// `document`, and optionally the page. Its schema is written out in
/// [`search_request_schema`] (a derived one cannot say "exactly one").
struct SearchRequest;

impl utoipa::PartialSchema for SearchRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::Object::new().into()
    }
}

impl ToSchema for SearchRequest {
    fn name() -> std::borrow::Cow<'static, str> {
        "SearchRequest".into()
    }
}

fn search_request_schema() -> Value {
    let form = |name: &str, schema: Value| {
        serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "required": [name],
            "properties": {
                name: schema,
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                    "description": "1 to 100 (default 20)"},
                "after": {"type": "string", "maxLength": 128,
                    "description": "The `next` of the previous page"},
            },
        })
    };
    let term = |description: &str| {
        serde_json::json!({"type": "string", "minLength": 1, "maxLength": 128,
            "pattern": "\\S", "description": description})
    };
    serde_json::json!({
        "description": "Exactly one of case_ref, receiver_case_number or document, and optionally the page.",
        "oneOf": [
            form("case_ref", term("The case reference")),
            form("receiver_case_number", term("The receiver's own case number, from its acknowledgement")),
            form("document", serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "number"],
                "properties": {
                    "type": {"type": "string", "enum": crate::domain::search::DOCUMENT_KINDS},
                    "number": term("As printed; spaces, dashes and case do not matter"),
                },
            })),
        ],
    })
}

/// One page of cases found.
#[derive(Debug, Serialize, ToSchema)]
struct SearchPage {
    cases: Vec<CaseSummary>,
    /// Give it as `after` for the next page; null on the last.
    next: Option<String>,
}

/// A case as a search shows it: no payload, no person.
#[derive(Debug, Serialize, ToSchema)]
struct CaseSummary {
    case_ref: String,
    #[schema(value_type = Option<super::cases::CaseStateDoc>)]
    state: Option<CaseState>,
    /// Messages this node sent and received in the case.
    messages: usize,
    #[schema(format = DateTime)]
    last_activity: Option<String>,
    /// Where to read the whole case.
    case_url: String,
}

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

fn bad_search(pointer: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::new(StatusCode::BAD_REQUEST, "bad_search", message.clone()).with_details(vec![
        Detail {
            pointer: Some(pointer.to_string()),
            keyword: Some("search".into()),
            message,
        },
    ])
}

/// Find cases.
///
/// By `case_ref`, by the receiver's `receiver_case_number`, or by an
/// identity `document` (`passport`, `national_id`, `travel_document`)
/// named in any message of the case; exact matches, through keyed hashes
/// (the database holds no searchable number). An embassy finds only cases
/// of the nationals it serves. Audited.
#[utoipa::path(
    post, path = "/v1/cases/search", operation_id = "searchCases",
    request_body(content = SearchRequest, content_type = "application/json",
        example = json!({"document": {"type": "passport", "number": "N0000001"}})),
    responses(
        (status = 200, description = "The cases found, by reference", body = SearchPage,
            example = json!({"cases": [{"case_ref": "TH-KH-2026-000042", "state": "acknowledged", "messages": 2,
                "last_activity": "2026-11-22T10:00:00Z", "case_url": "/v1/cases/TH-KH-2026-000042"}], "next": null})),
        (status = 400, description = "Malformed JSON, or not exactly one search form, or a bad term, limit or cursor (bad_search, details[0].pointer says where)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within the read timeout (request_timeout)", body = ErrorEnvelope),
        (status = 413, description = "Body larger than local_api.max_body_bytes (body_too_large)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn search_cases(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    trail: AuditTrail,
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
    let Some(fields) = doc.as_object_mut() else {
        return Err(bad_search("", "the body must be a JSON object"));
    };
    // As the document says: an integer (15.0 is one), a string; never null.
    let limit = match fields.remove("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (1.0..=MAX_LIMIT as f64).contains(n))
            .map(|n| n as i64)
            .ok_or_else(|| {
                bad_search(
                    "/limit",
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let after = match fields.remove("after") {
        None => String::new(),
        Some(Value::String(s)) if s.chars().count() <= 128 => s,
        Some(_) => return Err(bad_search("/after", "must be the `next` of a page")),
    };
    let query = SearchQuery::parse(&doc).map_err(|e| bad_search(&e.pointer, e.message))?;
    let principal = principal.map(|p| p.0);
    // Of an embassy's, only cases of its own nationals: filtered in the
    // query, so a page is full and the total says nothing of the others.
    let origin = principal
        .as_ref()
        .filter(|p| p.role == Embassy)
        .map(|p| p.serves.clone().unwrap_or_default());
    let found: Vec<String> = match &query {
        SearchQuery::CaseRef(c) => {
            let visible = principal.as_ref().is_none_or(|p| p.may_see_case(c));
            if visible && c.as_str() > after.as_str() && node.store.case_exists(c).await? {
                vec![c.clone()]
            } else {
                Vec::new()
            }
        }
        _ => {
            let term = query.term().expect("a hashed form");
            let digest = node.store.search_digest(&term);
            node.store
                .cases_by_digest(&digest, &after, origin.as_deref(), limit + 1)
                .await?
        }
    };
    let more = found.len() as i64 > limit;
    let mut cases = Vec::new();
    for case_ref in found.into_iter().take(usize::try_from(limit).unwrap_or(20)) {
        let (out, inb) = node.store.case_messages(&case_ref).await?;
        let history = node.store.case_history(&case_ref).await?;
        let last = out
            .iter()
            .map(|r| r.submitted_at)
            .chain(inb.iter().map(|r| r.received_at))
            .max();
        trail.touched(&case_ref, None);
        cases.push(CaseSummary {
            state: lifecycle::replay(&case_ref, &history),
            messages: out.len() + inb.len(),
            last_activity: last.map(rfc3339_ms),
            case_url: format!("/v1/cases/{case_ref}"),
            case_ref,
        });
    }
    let next = more
        .then(|| cases.last().map(|c| c.case_ref.clone()))
        .flatten();
    Ok(axum::Json(SearchPage { cases, next }).into_response())
}
