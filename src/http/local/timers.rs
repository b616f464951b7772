//! Timers and SLA figures: acknowledgement deadlines by state, peer and due
//! time, and per agreement how answers kept to them.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::Routes;
use super::params;
use super::views::{Timer, TimerPage, TimerSide};
use crate::app::node::Node;
use crate::app::timers::SlaFigures;
use crate::clock::rfc3339_ms;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::http::openapi::example;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            __path_list_timers,
            &[Operator, Caseworker],
            None,
            list_timers,
        )
        .route(__path_sla, &[Operator, Caseworker], None, sla)
}

/// The schemas of this module's answers.
pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<Sla>();
}

/// Which timers to list.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum TimerStateFilter {
    Open,
    Breached,
    Met,
    /// Open or breached, with the due time passed.
    Overdue,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimerQuery {
    #[param(inline)]
    state: Option<TimerStateFilter>,
    /// The peer country, e.g. TH.
    #[param(pattern = "^[A-Za-z]{2}$")]
    peer: Option<String>,
    /// Only timers due before this RFC 3339 time.
    #[param(format = DateTime)]
    due_before: Option<String>,
    /// A cursor a page returned (`next_cursor`).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Sla {
    node: String,
    #[schema(format = DateTime)]
    since: String,
    #[schema(format = DateTime)]
    until: String,
    groups: Vec<SlaGroup>,
}

/// How the timers of one agreement, message type and side kept time.
#[derive(Debug, Serialize, ToSchema)]
struct SlaGroup {
    agreement: String,
    #[serde(rename = "type")]
    message_type: String,
    expected_type: String,
    side: TimerSide,
    count: usize,
    met_on_time: usize,
    met_late: usize,
    open: usize,
    breached: usize,
    /// Not met, and the due time has passed.
    overdue_now: usize,
    median_seconds_to_answer: Option<f64>,
    p90_seconds_to_answer: Option<f64>,
}

impl From<SlaFigures> for SlaGroup {
    fn from(f: SlaFigures) -> Self {
        Self {
            agreement: f.agreement,
            message_type: f.message_type,
            expected_type: f.expected_type,
            side: if f.side == "awaiting_answer" {
                TimerSide::AwaitingAnswer
            } else {
                TimerSide::AnswerDue
            },
            count: f.count,
            met_on_time: f.met_on_time,
            met_late: f.met_late,
            open: f.open,
            breached: f.breached,
            overdue_now: f.overdue_now,
            median_seconds_to_answer: f.median_seconds_to_answer,
            p90_seconds_to_answer: f.p90_seconds_to_answer,
        }
    }
}

/// Acknowledgement deadlines.
///
/// Filtered by state, peer and due time; `overdue` means open or breached
/// with the due time passed.
#[utoipa::path(
    get, path = "/v1/timers", operation_id = "listTimers",
    params(TimerQuery),
    responses(
        (status = 200, description = "A page", body = TimerPage,
            example = json!({"timers": [example::timer()], "next_cursor": 1})),
        (status = 400, description = "A bad state, time, cursor, limit or query (bad_query, bad_cursor, bad_limit)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
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
    let peer = match q.peer {
        Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(p.to_ascii_uppercase())
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "`peer` must be a two-letter country code, e.g. TH",
            ));
        }
        None => None,
    };
    let overdue = matches!(q.state, Some(TimerStateFilter::Overdue));
    let state = match q.state {
        None => None,
        Some(TimerStateFilter::Open) => Some("open".to_string()),
        Some(TimerStateFilter::Met) => Some("met".to_string()),
        Some(TimerStateFilter::Breached) => Some("breached".to_string()),
        Some(TimerStateFilter::Overdue) => {
            let now = node.clock.now_ms();
            due_before = Some(due_before.map_or(now, |d| d.min(now)));
            None
        }
    };
    let limit = params::limit(q.limit)?;
    let filter = crate::store::timers::TimerFilter {
        state,
        peer,
        due_before,
        after_id: params::cursor(q.after)?,
        limit,
    };
    let rows = node.store.timers(&filter).await?;
    let next = rows.last().map(|t| t.id);
    let timers = rows
        .iter()
        .filter(|t| !overdue || t.state != "met")
        .map(Timer::from)
        .collect();
    Ok(axum::Json(TimerPage {
        timers,
        next_cursor: next,
    })
    .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SlaQuery {
    /// The window: timers started in the last `days` days.
    #[param(minimum = 1, maximum = 3650, default = 90)]
    days: Option<i64>,
}

/// SLA figures per agreement and message type.
///
/// Over the timers started in the window, per agreement, message type and
/// side: count, met on time, met late, open, breached, median and p90 time
/// to answer.
#[utoipa::path(
    get, path = "/v1/sla", operation_id = "getSla",
    params(SlaQuery),
    responses(
        (status = 200, description = "Figures", body = Sla, example = json!(example::sla())),
        (status = 400, description = "`days` out of range, or a bad query (bad_query)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
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
    let groups = crate::app::timers::sla(&timers, now);
    Ok(axum::Json(Sla {
        node: node.country.clone(),
        since: rfc3339_ms(since),
        until: rfc3339_ms(now),
        groups: groups.into_iter().map(SlaGroup::from).collect(),
    })
    .into_response())
}
