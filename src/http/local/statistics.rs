//! De-identified statistics: the annual reports' tables, counted from the
//! facts kept at admission, with small cells suppressed. Analysts may read
//! this and nothing else.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::Routes;
use super::params;
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::domain::statistics::{self, Durations, Table};
use crate::http::error::{ApiError, Detail};
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            __path_statistics,
            &[Operator, Caseworker, Analyst],
            None,
            statistics,
        )
        .route(
            __path_timings,
            &[Operator, Caseworker, Analyst],
            None,
            timings,
        )
}

/// The schemas of this module's answers.
pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<Table>();
    doc.schema::<Timings>();
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatisticsQuery {
    /// What to count.
    #[param(inline)]
    count: Option<CountedParam>,
    /// First day counted: YYYY-MM-DD, or YYYY-MM / YYYY for the first day
    /// of that month or year.
    #[param(example = "2026-01-01", pattern = r"^\d{4}(-\d{2}(-\d{2})?)?$")]
    from: String,
    /// Last day counted, inclusive: YYYY-MM-DD, or YYYY-MM / YYYY for the
    /// last day of that month or year. At most ten years after `from`.
    #[param(example = "2026-12-31", pattern = r"^\d{4}(-\d{2}(-\d{2})?)?$")]
    to: String,
    /// Categories to group by, comma-separated: corridor, origin, year,
    /// month, sex, age_band, minor, sector, recruitment_channel,
    /// return_channel, gate, outcome, reintegration_status.
    #[param(example = "corridor,sex,minor")]
    group_by: Option<String>,
}

/// What a table counts.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum CountedParam {
    Referrals,
    Tracings,
    Returnees,
    Reintegrations,
}

impl CountedParam {
    fn as_str(self) -> &'static str {
        match self {
            Self::Referrals => "referrals",
            Self::Tracings => "tracings",
            Self::Returnees => "returnees",
            Self::Reintegrations => "reintegrations",
        }
    }
}

fn bad_statistics(e: statistics::QueryError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_statistics_query",
        e.to_string(),
    )
    .with_details(vec![Detail {
        pointer: None,
        keyword: Some(e.parameter.to_string()),
        message: e.message,
    }])
}

fn query_of(node: &Node, q: &StatisticsQuery) -> Result<statistics::Query, ApiError> {
    statistics::Query::parse(
        q.count.map(CountedParam::as_str),
        Some(&q.from),
        Some(&q.to),
        q.group_by.as_deref(),
        node.settings.statistics.k,
    )
    .map_err(bad_statistics)
}

/// A statistics table.
///
/// Counts referrals, tracings, returnees (persons handed over) or
/// reintegrations in the period, grouped by the categories named. Every
/// count from 1 to k−1 shows as `<k` (`count` absent), and so does the
/// smallest other cell of any line that would otherwise hold one hidden
/// cell alone, so that no total or coarser table gives it back.
#[utoipa::path(
    get, path = "/v1/statistics", operation_id = "getStatistics",
    params(StatisticsQuery),
    responses(
        (status = 200, description = "The table", body = Table, example = json!({
            "count": "returnees", "from": "2026-01-01", "to": "2026-12-31",
            "group_by": ["corridor", "sex"], "k": 5,
            "cells": [
                {"keys": {"corridor": "KH-TH", "sex": "female"}, "count": 12, "shown": "12"},
                {"keys": {"corridor": "KH-TH", "sex": "male"}, "shown": "<5"},
                {"keys": {"corridor": "KH-VN", "sex": "female"}, "shown": "<5"}
            ],
            "total": {"count": 19, "shown": "19"}
        })),
        (status = 400, description = "A missing, inverted or too long period, an unknown category or count (bad_statistics_query), or a bad query (bad_query)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn statistics(
    State(node): State<Arc<Node>>,
    query: Result<Query<StatisticsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let query = query_of(&node, &q)?;
    let table = crate::app::statistics::table(&node.store, &query).await?;
    Ok(axum::Json(table).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimingsQuery {
    /// First day: YYYY-MM-DD, YYYY-MM or YYYY.
    #[param(example = "2026-01-01", pattern = r"^\d{4}(-\d{2}(-\d{2})?)?$")]
    from: String,
    /// Last day, inclusive: YYYY-MM-DD, YYYY-MM or YYYY.
    #[param(example = "2026-12-31", pattern = r"^\d{4}(-\d{2}(-\d{2})?)?$")]
    to: String,
}

/// How long cases took.
#[derive(Debug, Serialize, ToSchema)]
struct Timings {
    from: String,
    to: String,
    k: u64,
    timings: Vec<Durations>,
}

/// Time from referral to acknowledgement and to handover.
///
/// Median and 90th percentile in days, over the cases referred (for the
/// acknowledgement) or the persons handed over (for the handover) in the
/// period; below k cases only the (suppressed) number is given.
#[utoipa::path(
    get, path = "/v1/statistics/timings", operation_id = "getStatisticsTimings",
    params(TimingsQuery),
    responses(
        (status = 200, description = "The figures", body = Timings, example = json!({
            "from": "2026-01-01", "to": "2026-12-31", "k": 5,
            "timings": [
                {"what": "referral_to_acknowledgement", "n": {"count": 40, "shown": "40"}, "median_days": 1.5, "p90_days": 2.9},
                {"what": "referral_to_handover", "n": {"shown": "<5"}, "median_days": null, "p90_days": null}
            ]
        })),
        (status = 400, description = "A missing, inverted or too long period (bad_statistics_query), or a bad query (bad_query)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn timings(
    State(node): State<Arc<Node>>,
    query: Result<Query<TimingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let query = statistics::Query::parse(
        None,
        Some(&q.from),
        Some(&q.to),
        None,
        node.settings.statistics.k,
    )
    .map_err(bad_statistics)?;
    let timings = crate::app::statistics::timings(&node.store, &query).await?;
    Ok(axum::Json(Timings {
        from: query.from.to_string(),
        to: query.to.to_string(),
        k: query.k,
        timings,
    })
    .into_response())
}
