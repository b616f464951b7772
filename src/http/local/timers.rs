//! Timers and SLA figures: acknowledgement deadlines by state, peer and due
//! time, and per agreement how answers kept to them.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::Routes;
use super::params;
use super::views::timer_view;
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            Method::GET,
            "/v1/timers",
            &[Operator, Caseworker],
            None,
            get(list_timers),
        )
        .route(
            Method::GET,
            "/v1/sla",
            &[Operator, Caseworker],
            None,
            get(sla),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerQuery {
    state: Option<String>,
    peer: Option<String>,
    due_before: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/timers?state=open|breached|met|overdue&peer=TH&due_before=<RFC 3339>&after=<cursor>&limit=<n>`.
/// `overdue` means open or breached with the due time passed.
async fn list_timers(
    State(node): State<Arc<Node>>,
    query: Result<Query<TimerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let mut due_before = match q.due_before.as_deref() {
        None => None,
        Some(t) => Some(crate::clock::parse_rfc3339_ms(t).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "`due_before` must be an RFC 3339 time",
            )
        })?),
    };
    let state = match q.state.as_deref() {
        None => None,
        Some(s @ ("open" | "met" | "breached")) => Some(s.to_string()),
        Some("overdue") => {
            let now = node.clock.now_ms();
            due_before = Some(due_before.map_or(now, |d| d.min(now)));
            None
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("`state` must be open, breached, met or overdue, not `{other}`"),
            ));
        }
    };
    let overdue = q.state.as_deref() == Some("overdue");
    let limit = params::limit(q.limit)?;
    let filter = crate::store::timers::TimerFilter {
        state,
        peer: q.peer.map(|p| p.to_ascii_uppercase()),
        due_before,
        after_id: params::cursor(q.after)?,
        limit,
    };
    let rows = node.store.timers(&filter).await?;
    let next = rows.last().map(|t| t.id);
    let timers: Vec<Value> = rows
        .iter()
        .filter(|t| !overdue || t.state != "met")
        .map(timer_view)
        .collect();
    Ok(axum::Json(json!({ "timers": timers, "next_cursor": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaQuery {
    days: Option<i64>,
}

/// `GET /v1/sla?days=<n>`: per agreement and type, over timers started in
/// the last `days` (default 90): count, met on time, met late, open,
/// breached, median and p90 time to answer.
async fn sla(
    State(node): State<Arc<Node>>,
    query: Result<Query<SlaQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let days = q.days.unwrap_or(90);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "`days` must be between 1 and 3650",
        ));
    }
    let now = node.clock.now_ms();
    let since = now - days * 86_400_000;
    let timers = node.store.timers_since(since).await?;
    let mut body = crate::app::timers::sla(&timers, now);
    body["node"] = json!(node.country);
    body["since"] = json!(rfc3339_ms(since));
    body["until"] = json!(rfc3339_ms(now));
    Ok(axum::Json(body).into_response())
}
