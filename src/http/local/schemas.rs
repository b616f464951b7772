//! The published message schemas: every type and version this node
//! speaks, and each JSON Schema itself.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::access::Routes;
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

const EVERYONE: &[crate::domain::access::Role] =
    &[Integrator, Caseworker, Embassy, Operator, Admin];

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            Method::GET,
            "/v1/schemas",
            EVERYONE,
            None,
            get(list_schemas),
        )
        .route(
            Method::GET,
            "/v1/schemas/{message_type}/{version}",
            EVERYONE,
            None,
            get(get_schema),
        )
}

/// `GET /v1/schemas`: every message type and version this node speaks.
async fn list_schemas(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let schemas: Vec<Value> = node
        .registry
        .schemas()
        .map(|(t, v, schema)| {
            json!({
                "type": t,
                "version": v,
                "title": schema.get("title"),
                "url": format!("/v1/schemas/{t}/{v}"),
            })
        })
        .collect();
    axum::Json(
        json!({ "envelope": {"version": 1, "url": "/v1/schemas/envelope/1"}, "schemas": schemas }),
    )
}

/// `GET /v1/schemas/{type}/{version}`: the JSON Schema itself.
async fn get_schema(
    State(node): State<Arc<Node>>,
    Path((message_type, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version: u32 = version.trim_start_matches('v').parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_version",
            "version must be a number, e.g. 1",
        )
    })?;
    if message_type == "envelope" && version == 1 {
        return Ok(axum::Json(node.registry.envelope_schema().clone()).into_response());
    }
    node.registry
        .schemas()
        .find(|(t, v, _)| *t == message_type && *v == version)
        .map(|(_, _, schema)| axum::Json(schema.clone()).into_response())
        .ok_or_else(|| ApiError::not_found("schema"))
}
