//! The service's own routes: health, the OpenAPI document, and the
//! Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::access::Routes;
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

/// The OpenAPI 3.1 description of the local and peer APIs.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/v1/health", &[], None, get(health))
        .route(Method::GET, "/openapi.json", &[], None, get(openapi))
        .route(
            Method::GET,
            "/metrics",
            &[Operator, Admin],
            None,
            get(metrics),
        )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(json!({
        "status": "ok",
        "node": node.country,
        "organisation": node.settings.node.organisation,
    }))
}

/// `GET /metrics`: Prometheus text format.
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
