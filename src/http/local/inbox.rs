//! The inbox feed: received messages in arrival order, with their
//! envelopes, for the case-management system to read on from a cursor.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{AuditTrail, Routes};
use super::params;
use super::views::parse_json_text;
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        Method::GET,
        "/v1/inbox",
        &[Caseworker],
        Some("inbox.read"),
        get(inbox),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/inbox?after=<cursor>&limit=<n>`: received messages in arrival
/// order. Pass the last `next_cursor` back as `after` to read on.
async fn inbox(
    State(node): State<Arc<Node>>,
    trail: AuditTrail,
    query: Result<Query<InboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "`after` must be a cursor returned by this feed",
            )
        })?,
    };
    let limit = params::limit(q.limit)?;
    let rows = node.store.inbox_after(after, limit).await?;
    let next = rows.last().map(|r| r.seq).unwrap_or(after);
    let messages: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "cursor": r.seq.to_string(),
                "message_id": r.message_id,
                "case_ref": r.case_ref,
                "type": r.message_type,
                "from": r.sender,
                "in_reply_to": r.in_reply_to,
                "received_at": rfc3339_ms(r.received_at),
                "receipt": parse_json_text(Some(&r.receipt)),
                "envelope": parse_json_text(Some(&r.body)),
            })
        })
        .collect();
    for r in &rows {
        trail.touched(&r.case_ref, Some(&r.message_id));
    }
    Ok(
        axum::Json(json!({ "messages": messages, "next_cursor": next.to_string() }))
            .into_response(),
    )
}
