//! The operators' dashboard: the page, and the figures it shows (queues,
//! peers, the oldest pending message, timers, recent rejections), none of
//! them personal.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::access::Routes;
use super::views::{parse_json_text, timer_view};
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/", &[], None, get(dashboard_page))
        .route(
            Method::GET,
            "/dashboard.js",
            &[],
            None,
            get(dashboard_script),
        )
        .route(
            Method::GET,
            "/dashboard.css",
            &[],
            None,
            get(dashboard_style),
        )
        .route(
            Method::GET,
            "/v1/dashboard",
            &[Operator, Admin],
            None,
            get(dashboard),
        )
}

/// What the page may load and who may frame it: its own script and style
/// only, data from this origin, never inside another site's frame.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The operators' dashboard page (static; its data comes from `/v1/dashboard`).
async fn dashboard_page() -> Response {
    static_asset("text/html; charset=utf-8", include_str!("dashboard.html"))
}

async fn dashboard_script() -> Response {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("dashboard.js"),
    )
}

async fn dashboard_style() -> Response {
    static_asset("text/css; charset=utf-8", include_str!("dashboard.css"))
}

/// A file of the page: no case data in it, so the browser may keep it, but
/// asks again each time (`no-cache`) so an upgrade shows at once.
fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /v1/dashboard`: what an operator needs at a glance, no personal data.
async fn dashboard(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let store = &node.store;
    let now = node.clock.now_ms();
    let counts = store.outbox_counts().await?;
    let mut queues =
        json!({"queued": 0, "delivering": 0, "delivered": 0, "rejected": 0, "dead": 0});
    for (_, state, n) in &counts {
        queues[state.as_str()] = json!(queues[state.as_str()].as_i64().unwrap_or(0) + n);
    }
    let health = node.metrics.peer_health();
    let peers: Vec<Value> = node
        .settings
        .peers
        .iter()
        .map(|p| {
            let h = health.get(&p.country);
            let pending: i64 = counts
                .iter()
                .filter(|(peer, state, _)| {
                    peer == &p.country && (state == "queued" || state == "delivering")
                })
                .map(|(_, _, n)| n)
                .sum();
            json!({
                "country": p.country,
                "reachable": h.map(|h| h.reachable),
                "last_success": h.and_then(|h| h.last_success).map(rfc3339_ms),
                "pending": pending,
            })
        })
        .collect();
    let pending = store.oldest_pending().await?;
    let oldest = pending.map(|r| {
        json!({
            "message_id": r.message_id, "case_ref": r.case_ref, "type": r.message_type, "peer": r.peer,
            "attempts": r.attempts, "submitted_at": rfc3339_ms(r.submitted_at),
            "age_seconds": (now - r.submitted_at).max(0) as f64 / 1000.0,
        })
    });
    let timer_counts = store.timer_counts().await?;
    let count_of = |s: &str| {
        timer_counts
            .iter()
            .find(|(k, _)| k == s)
            .map_or(0, |(_, n)| *n)
    };
    let breached = store
        .timers(&crate::store::timers::TimerFilter {
            state: Some("breached".into()),
            limit: 20,
            ..Default::default()
        })
        .await?;
    let mut due_soon = store
        .timers(&crate::store::timers::TimerFilter {
            state: Some("open".into()),
            due_before: Some(now + 48 * 3_600_000),
            limit: 200,
            ..Default::default()
        })
        .await?;
    due_soon.sort_by_key(|t| t.due_at);
    due_soon.truncate(20);
    let mut failed = store.outbox_list(Some("rejected"), 20).await?;
    failed.extend(store.outbox_list(Some("dead"), 20).await?);
    failed.sort_by_key(|r| std::cmp::Reverse(r.seq));
    failed.truncate(20);
    let rejections: Vec<Value> = failed
        .iter()
        .map(|r| {
            let e = parse_json_text(r.last_error.as_deref());
            let code = e["error"]["code"].as_str().or(e["kind"].as_str()).unwrap_or("").to_string();
            let message = e["error"]["message"].as_str().or(e["message"].as_str()).unwrap_or("").to_string();
            json!({"message_id": r.message_id, "case_ref": r.case_ref, "type": r.message_type, "peer": r.peer,
                   "state": r.state, "code": code, "message": message})
        })
        .collect();
    Ok(axum::Json(json!({
        "node": node.country,
        "organisation": node.settings.node.organisation,
        "generated_at": rfc3339_ms(now),
        "queues": queues,
        "peers": peers,
        "oldest_pending": oldest,
        "timers": {
            "open": count_of("open"),
            "breached": count_of("breached"),
            "breached_list": breached.iter().map(timer_view).collect::<Vec<_>>(),
            "due_soon": due_soon.iter().map(timer_view).collect::<Vec<_>>(),
        },
        "recent_rejections": rejections,
    }))
    .into_response())
}
