//! The audit log: who read or changed which case data, hash-chained.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::access::Routes;
use super::params;
use super::views::{AuditPage, AuditRecord};
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::http::openapi::example;
use crate::protocol::ErrorEnvelope;
use crate::store::audit::AuditFilter;

pub(super) fn routes() -> Routes {
    Routes::new().route(__path_audit_log, &[Admin], Some("audit.read"), audit_log)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this case's records.
    case_ref: Option<String>,
    /// Only the records of this actor: those whose `actor` (the calling
    /// system's configured name) or `officer` (its On-Behalf-Of header)
    /// equals it exactly.
    actor: Option<String>,
    /// A cursor a page returned (`next_cursor`).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// The hash-chained audit log: who read or changed which case data.
///
/// Each record names the calling system (`actor`, `role`) and, when the
/// call named one, the officer it acted for (`officer`). `actor=` finds
/// the records of a calling system or of an officer.
#[utoipa::path(
    get, path = "/v1/audit", operation_id = "readAudit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page", body = AuditPage, example = json!(example::audit_page())),
        (status = 400, description = "A bad cursor, limit or query (bad_cursor, bad_limit, bad_query)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn audit_log(
    State(node): State<Arc<Node>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let limit = params::limit(q.limit)?;
    let filter = AuditFilter {
        case_ref: q.case_ref.as_deref(),
        actor: q.actor.as_deref(),
    };
    let rows = node
        .store
        .audit_rows_where(&filter, params::cursor(q.after)?, limit)
        .await?;
    Ok(axum::Json(AuditPage {
        next_cursor: rows.last().map(|r| r.seq),
        records: rows.iter().map(AuditRecord::from).collect(),
    })
    .into_response())
}
