//! The local API, used by this country's own systems over TLS with a bearer
//! token or client certificate: submit messages, follow their delivery,
//! read the inbox feed, see a case's timeline, print its handover record
//! and the person's own timeline, watch timers and queues.
//! One module per resource, each declaring its routes with the roles that
//! may call them ([`access::Routes`]).

pub mod access;
mod audit;
mod batch;
mod cases;
mod dashboard;
mod evidence;
mod inbox;
mod messages;
mod openapi;
mod outbox;
mod params;
mod print;
mod schemas;
mod search;
mod service;
mod statistics;
mod timers;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use tower_http::set_header::SetResponseHeaderLayer;

pub use access::RouteRule;
pub use openapi::openapi_document;

use crate::app::node::Node;
use crate::http::error::{ApiError, count_store_failures};
use access::Routes;

fn routes() -> Routes {
    service::routes()
        .merge(dashboard::routes())
        .merge(messages::routes())
        .merge(batch::routes())
        .merge(inbox::routes())
        .merge(cases::routes())
        .merge(search::routes())
        .merge(evidence::routes())
        .merge(print::routes())
        .merge(timers::routes())
        .merge(statistics::routes())
        .merge(outbox::routes())
        .merge(audit::routes())
        .merge(schemas::routes())
}

/// Every local API route and who may call it.
pub fn rules() -> Vec<RouteRule> {
    routes().rules()
}

pub fn router(node: Arc<Node>) -> Router {
    let api = &node.settings.local_api;
    let limit = api.max_body_bytes.max(api.max_batch_bytes());
    routes()
        .into_router(&node)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            node.clone(),
            count_store_failures,
        ))
        // Case data must not linger in caches or be sniffed or framed; the
        // page's own files say `no-cache` themselves.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Bodies are read with our own limit (clear JSON error); this only
        // stops axum's default from cutting in first.
        .layer(axum::extract::DefaultBodyLimit::max(
            limit.saturating_add(1),
        ))
        .with_state(node)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such route on the local API",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
