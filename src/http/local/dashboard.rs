//! The operators' dashboard: the page, and the figures it shows (queues,
//! peers, the oldest pending message, timers, recent rejections), none of
//! them personal. Its chart of returnees per month is drawn in the page
//! from `/v1/statistics` (suppressed there, and read once a minute rather
//! than with these figures every 10 s; an admin, who may read these but
//! not statistics, sees the page without it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::access::Routes;
use super::views::{DeliveryState, Timer, parse_json_text};
use crate::app::node::Node;
use crate::clock::rfc3339_ms;
use crate::domain::access::Role::*;
use crate::http::error::ApiError;
use crate::http::openapi::example;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(__path_dashboard_page, &[], None, dashboard_page)
        .route(__path_dashboard_script, &[], None, dashboard_script)
        .route(__path_dashboard_style, &[], None, dashboard_style)
        .route(__path_dashboard, &[Operator, Admin], None, dashboard)
}

/// What the page may load and who may frame it: its own script and style
/// only, data from this origin, never inside another site's frame.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The operators' dashboard page.
///
/// Static; its data comes from `/v1/dashboard`.
#[utoipa::path(
    get, path = "/", operation_id = "dashboardPage",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)),
)]
async fn dashboard_page() -> Response {
    static_asset("text/html; charset=utf-8", include_str!("dashboard.html"))
}

/// The dashboard's script.
#[utoipa::path(
    get, path = "/dashboard.js", operation_id = "dashboardScript",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)),
)]
async fn dashboard_script() -> Response {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("dashboard.js"),
    )
}

/// The dashboard's style sheet.
#[utoipa::path(
    get, path = "/dashboard.css", operation_id = "dashboardStyle",
    responses((status = 200, description = "The style sheet", content_type = "text/css", body = String)),
)]
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

/// The schemas of this module's answers.
pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<Dashboard>();
}

/// What an operator needs at a glance; nothing personal.
#[derive(Debug, Serialize, ToSchema)]
struct Dashboard {
    node: String,
    organisation: String,
    #[schema(format = DateTime)]
    generated_at: String,
    queues: Queues,
    peers: Vec<PeerHealth>,
    oldest_pending: Option<OldestPending>,
    timers: TimerSummary,
    /// The latest rejected or dead messages, newest first.
    recent_rejections: Vec<Rejection>,
    /// Certificates in force (own TLS, API and signing, trusted CAs) that
    /// expire within 30 days or have expired, soonest first.
    certificates_expiring: Vec<ExpiringCertificate>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ExpiringCertificate {
    /// `tls`, `api_tls`, `signing`, `ca:<CC>` or `client_ca`.
    which: String,
    subject: String,
    #[schema(format = DateTime)]
    not_after: String,
    /// Negative once expired.
    days_left: i64,
}

/// How far ahead the dashboard warns of a certificate's end.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Outbound messages by delivery state.
#[derive(Debug, Default, Serialize, ToSchema)]
struct Queues {
    queued: i64,
    delivering: i64,
    delivered: i64,
    rejected: i64,
    dead: i64,
}

#[derive(Debug, Serialize, ToSchema)]
struct PeerHealth {
    country: String,
    /// Whether the last attempt got an answer; null before the first.
    reachable: Option<bool>,
    #[schema(format = DateTime)]
    last_success: Option<String>,
    /// Queued or being delivered to this peer.
    pending: i64,
}

#[derive(Debug, Serialize, ToSchema)]
struct OldestPending {
    #[schema(format = Uuid)]
    message_id: String,
    case_ref: String,
    #[serde(rename = "type")]
    message_type: String,
    peer: String,
    attempts: i64,
    #[schema(format = DateTime)]
    submitted_at: String,
    age_seconds: f64,
}

#[derive(Debug, Serialize, ToSchema)]
struct TimerSummary {
    open: i64,
    breached: i64,
    /// Up to 20 breached timers.
    breached_list: Vec<Timer>,
    /// Up to 20 open timers due in the next 48 hours, soonest first.
    due_soon: Vec<Timer>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Rejection {
    #[schema(format = Uuid)]
    message_id: String,
    case_ref: String,
    #[serde(rename = "type")]
    message_type: String,
    peer: String,
    state: DeliveryState,
    /// The peer's error code, or what went wrong on the way.
    code: String,
    message: String,
}

/// The dashboard's figures.
///
/// Queues, peers, the oldest pending message, timers and recent
/// rejections; nothing personal.
#[utoipa::path(
    get, path = "/v1/dashboard", operation_id = "dashboard",
    responses(
        (status = 200, description = "The figures", body = Dashboard, example = json!(example::dashboard())),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn dashboard(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let store = &node.store;
    let now = node.clock.now_ms();
    let counts = store.outbox_counts().await?;
    let mut queues = Queues::default();
    for (_, state, n) in &counts {
        let slot = match state.as_str() {
            "queued" => &mut queues.queued,
            "delivering" => &mut queues.delivering,
            "delivered" => &mut queues.delivered,
            "rejected" => &mut queues.rejected,
            "dead" => &mut queues.dead,
            _ => continue,
        };
        *slot += n;
    }
    let health = node.metrics.peer_health();
    let peers = node
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
            PeerHealth {
                country: p.country.clone(),
                reachable: h.map(|h| h.reachable),
                last_success: h.and_then(|h| h.last_success).map(rfc3339_ms),
                pending,
            }
        })
        .collect();
    let oldest_pending = store.oldest_pending().await?.map(|r| OldestPending {
        age_seconds: (now - r.submitted_at).max(0) as f64 / 1000.0,
        submitted_at: rfc3339_ms(r.submitted_at),
        message_id: r.message_id,
        case_ref: r.case_ref,
        message_type: r.message_type,
        peer: r.peer,
        attempts: r.attempts,
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
    let recent_rejections = failed
        .iter()
        .map(|r| {
            let e = parse_json_text(r.last_error.as_deref());
            let text = |v: &Value| v.as_str().map(str::to_string);
            Rejection {
                code: text(&e["error"]["code"])
                    .or_else(|| text(&e["kind"]))
                    .unwrap_or_default(),
                message: text(&e["error"]["message"])
                    .or_else(|| text(&e["message"]))
                    .unwrap_or_default(),
                message_id: r.message_id.clone(),
                case_ref: r.case_ref.clone(),
                message_type: r.message_type.clone(),
                peer: r.peer.clone(),
                state: r.state.into(),
            }
        })
        .collect();
    let mut expiring: Vec<_> = node
        .credentials()
        .expiry
        .iter()
        .filter(|e| e.not_after.saturating_mul(1000) < now + EXPIRY_WARNING_DAYS * 86_400_000)
        .map(|e| ExpiringCertificate {
            which: e.which.clone(),
            subject: e.subject.clone(),
            not_after: rfc3339_ms(e.not_after.saturating_mul(1000)),
            days_left: (e.not_after.saturating_mul(1000) - now).div_euclid(86_400_000),
        })
        .collect();
    expiring.sort_by(|a, b| a.days_left.cmp(&b.days_left).then(a.which.cmp(&b.which)));
    Ok(axum::Json(Dashboard {
        node: node.country.clone(),
        organisation: node.settings.node.organisation.clone(),
        generated_at: rfc3339_ms(now),
        queues,
        peers,
        oldest_pending,
        timers: TimerSummary {
            open: count_of("open"),
            breached: count_of("breached"),
            breached_list: breached.iter().map(Timer::from).collect(),
            due_soon: due_soon.iter().map(Timer::from).collect(),
        },
        recent_rejections,
        certificates_expiring: expiring,
    })
    .into_response())
}
