//! The published message schemas: every type and version this node
//! speaks, and each JSON Schema itself.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::access::Routes;
use super::views::{SchemaEntry, SchemaList, SchemaRef};
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::protocol::ErrorEnvelope;

const EVERYONE: &[crate::domain::access::Role] =
    &[Integrator, Caseworker, Embassy, Operator, Admin];

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(__path_list_schemas, EVERYONE, None, list_schemas)
        .route(__path_get_schema, EVERYONE, None, get_schema)
}

/// Every message type and version this node speaks.
#[utoipa::path(
    get, path = "/v1/schemas", operation_id = "listSchemas",
    responses(
        (status = 200, description = "The list", body = SchemaList,
            example = json!({"envelope": {"version": 1, "url": "/v1/schemas/envelope/1"},
                "schemas": [{"type": "referral.notify", "version": 1, "title": "Referral", "url": "/v1/schemas/referral.notify/1"}]})),
    ),
)]
async fn list_schemas(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let schemas = node
        .registry
        .schemas()
        .map(|(t, v, schema)| SchemaEntry {
            message_type: t.to_string(),
            version: v,
            title: schema
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_string),
            url: format!("/v1/schemas/{t}/{v}"),
        })
        .collect();
    axum::Json(SchemaList {
        envelope: SchemaRef {
            version: 1,
            url: "/v1/schemas/envelope/1".into(),
        },
        schemas,
    })
}

/// One JSON Schema (draft 2020-12), as published.
///
/// `envelope`/1 is the envelope's.
#[utoipa::path(
    get, path = "/v1/schemas/{message_type}/{version}", operation_id = "getSchema",
    params(
        ("message_type" = String, Path, description = "A message type, e.g. referral.notify, or `envelope`"),
        ("version" = String, Path, pattern = "^v?[0-9]{1,9}$", description = "The schema version, e.g. 1"),
    ),
    responses(
        (status = 200, description = "The schema", body = Object,
            example = json!({"$schema": "https://json-schema.org/draft/2020-12/schema"})),
        (status = 400, description = "The version is not a number (bad_version)", body = ErrorEnvelope),
        (status = 404, description = "No such type and version (not_found)", body = ErrorEnvelope),
    ),
)]
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
