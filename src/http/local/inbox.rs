//! The inbox feed: received messages in arrival order, with their
//! envelopes, for the case-management system to read on from a cursor.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::access::{AuditTrail, Routes};
use super::params;
use super::views::{InboxEntry, InboxPage};
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new().route(__path_inbox, &[Caseworker], Some("inbox.read"), inbox)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct InboxQuery {
    /// A cursor a page returned (`next_cursor`); from the start when left out.
    #[param(pattern = "^[0-9]{0,18}$")]
    after: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Received messages in arrival order.
///
/// Each with its envelope as received. Pass the last `next_cursor` back as
/// `after` to read on.
#[utoipa::path(
    get, path = "/v1/inbox", operation_id = "readInbox",
    params(InboxQuery),
    responses(
        (status = 200, description = "A page", body = InboxPage,
            example = json!({"messages": [], "next_cursor": "0"})),
        (status = 400, description = "A bad cursor, limit or query (bad_cursor, bad_limit, bad_query)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
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
    for r in &rows {
        trail.touched(&r.case_ref, Some(&r.message_id));
    }
    Ok(axum::Json(InboxPage {
        messages: rows.iter().map(InboxEntry::from).collect(),
        next_cursor: next.to_string(),
    })
    .into_response())
}
