//! The service's own routes: health, the OpenAPI document, and the
//! Prometheus metrics.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::access::Routes;
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

/// The OpenAPI 3.1 description of the local and peer APIs, as served: the
/// document in `openapi.json` with the submitted envelope's schema taken
/// from the published envelope schema (so the two cannot drift apart).
pub fn openapi_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc: Value =
            serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json is JSON");
        doc["components"]["schemas"]["Envelope"] = submitted_envelope();
        serde_json::to_string(&doc).expect("a JSON value serializes")
    })
}

/// `envelope.v1.json` as a submission may be written: the fields the
/// gateway fills in may be left out; its `$defs` inlined, so the schema
/// stands on its own inside another document.
fn submitted_envelope() -> Value {
    let mut schema: Value = serde_json::from_str(crate::domain::message::ENVELOPE_SCHEMA)
        .expect("the envelope schema is JSON");
    let defs = schema
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .unwrap_or(Value::Null);
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    inline_defs(&mut schema, &defs);
    let filled = ["message_id", "created_at", "from", "in_reply_to"];
    if let Some(required) = schema["required"].as_array_mut() {
        required.retain(|r| !r.as_str().is_some_and(|r| filled.contains(&r)));
    }
    schema["description"] = json!(
        "The envelope (GET /v1/schemas/envelope/1) as submitted: message_id, created_at, \
         from and in_reply_to may be left out and are filled in by the gateway. The payload \
         is checked against the schema of its type and version (GET /v1/schemas)."
    );
    schema
}

fn inline_defs(v: &mut Value, defs: &Value) {
    match v {
        Value::Object(o) => {
            if let Some(name) = o
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                let mut def = defs[name].clone();
                inline_defs(&mut def, defs);
                o.remove("$ref");
                if let Value::Object(d) = def {
                    for (k, val) in d {
                        o.entry(k).or_insert(val);
                    }
                }
            }
            for child in o.values_mut() {
                inline_defs(child, defs);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| inline_defs(i, defs)),
        _ => {}
    }
}

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
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
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
