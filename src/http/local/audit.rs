//! The audit log: who read or changed which case data, hash-chained.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::Routes;
use super::params;
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        Method::GET,
        "/v1/audit",
        &[Admin],
        Some("audit.read"),
        get(audit_log),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    case_ref: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/audit?case_ref=&after=&limit=`: the audit log (admin).
async fn audit_log(
    State(node): State<Arc<Node>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let limit = params::limit(q.limit)?;
    let rows = node
        .store
        .audit_rows(q.case_ref.as_deref(), params::cursor(q.after)?, limit)
        .await?;
    let next = rows.last().map(|r| r.seq);
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq, "at": rfc3339_ms(r.at), "actor": r.actor, "role": r.role, "action": r.action,
                "case_ref": r.case_ref, "message_id": r.message_id, "result": r.result, "hash": r.hash,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "records": records, "next_cursor": next })).into_response())
}
