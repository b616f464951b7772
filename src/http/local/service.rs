//! The service's own routes: health, the OpenAPI document, and the
//! Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::access::Routes;
use super::openapi::openapi_document;
use super::views::Health;
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(__path_health, &[], None, health)
        .route(__path_openapi, &[], None, openapi)
        .route(__path_metrics, &[Operator, Admin], None, metrics)
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of both APIs", body = Object)),
)]
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// Liveness: the gateway answers.
#[utoipa::path(
    get, path = "/v1/health", operation_id = "health",
    responses((status = 200, description = "OK", body = Health,
        example = json!({"status": "ok", "node": "KH", "organisation": "MOSVY"}))),
)]
async fn health(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(Health {
        status: "ok",
        node: node.country.clone(),
        organisation: node.settings.node.organisation.clone(),
    })
}

/// Metrics (OpenMetrics text).
///
/// The OpenMetrics text format, version 1.0.0, one registry per node; the
/// README lists every metric.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics",
    responses(
        (status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn metrics(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let outbox = node.store.outbox_counts().await?;
    let timers = node.store.timer_counts().await?;
    let out = node.metrics.render(&outbox, &timers);
    Ok((
        [(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)],
        out,
    )
        .into_response())
}
