//! The local API, used by this country's own systems over TLS with a bearer
//! token: submit messages, follow their delivery, read the inbox feed, see a
//! case's timeline. Which role may call which route is declared once, in
//! [`ROUTES`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, warn};

use crate::api_error::{ApiError, Detail, read_json_body};
use crate::clock::rfc3339_ms;
use crate::gateway::Node;
use crate::store::{Enqueued, InboxRow, NewOutbound, OutboxRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The focal point's case-management system: full case data.
    Caseworker,
    /// Consular staff: case state and timeline, no personal data.
    Embassy,
    /// Queues, peers and timers; no personal data.
    Operator,
    /// Validation and schemas only.
    Integrator,
    /// Outbox operations.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caseworker => "caseworker",
            Self::Embassy => "embassy",
            Self::Operator => "operator",
            Self::Integrator => "integrator",
            Self::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// One route and the roles allowed on it; an empty list means public.
#[derive(Debug)]
pub struct RouteRule {
    pub method: Method,
    pub path: &'static str,
    pub roles: &'static [Role],
    /// The audit action this route records, if it reads or changes case data.
    pub audit: Option<&'static str>,
}

use Role::*;

/// Every local API route and who may call it.
pub static ROUTES: &[RouteRule] = &[
    RouteRule {
        method: Method::GET,
        path: "/v1/health",
        roles: &[],
        audit: None,
    },
    RouteRule {
        method: Method::GET,
        path: "/openapi.json",
        roles: &[],
        audit: None,
    },
    RouteRule {
        method: Method::GET,
        path: "/",
        roles: &[],
        audit: None,
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/dashboard",
        roles: &[Operator, Admin],
        audit: None,
    },
    RouteRule {
        method: Method::POST,
        path: "/v1/messages",
        roles: &[Caseworker],
        audit: Some("message.submit"),
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/messages/{id}",
        roles: &[Caseworker, Operator, Admin],
        audit: Some("message.read"),
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/inbox",
        roles: &[Caseworker],
        audit: Some("inbox.read"),
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/cases/{case_ref}",
        roles: &[Caseworker, Embassy, Operator],
        audit: Some("case.read"),
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/timers",
        roles: &[Operator, Caseworker],
        audit: None,
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/sla",
        roles: &[Operator, Caseworker],
        audit: None,
    },
    RouteRule {
        method: Method::POST,
        path: "/v1/outbox/{id}/retry",
        roles: &[Admin],
        audit: Some("message.retry"),
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/audit",
        roles: &[Admin],
        audit: Some("audit.read"),
    },
    RouteRule {
        method: Method::GET,
        path: "/metrics",
        roles: &[Operator, Admin],
        audit: None,
    },
    RouteRule {
        method: Method::POST,
        path: "/v1/validate",
        roles: &[Integrator, Caseworker],
        audit: None,
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/schemas",
        roles: &[Integrator, Caseworker, Embassy, Operator, Admin],
        audit: None,
    },
    RouteRule {
        method: Method::GET,
        path: "/v1/schemas/{message_type}/{version}",
        roles: &[Integrator, Caseworker, Embassy, Operator, Admin],
        audit: None,
    },
];

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn router(node: Arc<Node>) -> Router {
    let limit = node.settings.local_api.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/", get(dashboard_page))
        .route("/v1/dashboard", get(dashboard))
        .route("/v1/messages", post(submit))
        .route("/v1/messages/{id}", get(message_status))
        .route("/v1/inbox", get(inbox))
        .route("/v1/cases/{case_ref}", get(case_timeline))
        .route("/v1/validate", post(validate))
        .route("/v1/timers", get(list_timers))
        .route("/v1/sla", get(sla))
        .route("/v1/outbox/{id}/retry", post(retry_message))
        .route("/metrics", get(metrics))
        .route("/v1/audit", get(audit_log))
        .route("/v1/schemas", get(list_schemas))
        .route("/v1/schemas/{message_type}/{version}", get(get_schema))
        .route_layer(middleware::from_fn_with_state(node.clone(), authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read with our own limit (clear JSON error); this only
        // stops axum's default from cutting in first.
        .layer(axum::extract::DefaultBodyLimit::max(
            limit.saturating_add(1),
        ))
        .with_state(node)
}

/// A query string that does not parse.
fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
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

/// What a handler tells the audit log about the case data it touched.
#[derive(Debug, Clone, Default)]
pub struct Audited(pub Vec<(String, Option<String>)>);

/// Set by a handler that wrote its audit record itself, in its own
/// transaction (a committed submission).
#[derive(Debug, Clone, Copy)]
struct AuditWritten;

/// Authenticates the bearer token, checks the route's roles, and writes the
/// audit record of routes that touch case data (refusals included). If the
/// audit record cannot be written the response is withheld (fail closed).
async fn authorize(State(node): State<Arc<Node>>, mut req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let Some(rule) = ROUTES
        .iter()
        .find(|r| r.path == path && r.method == req.method())
    else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "route has no access rule",
        )
        .into_response();
    };
    if rule.roles.is_empty() {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // A bearer token wins; otherwise a verified client certificate whose
    // subject is configured.
    let principal = token
        .and_then(|t| node.tokens.get(&hash_token(t)))
        .cloned()
        .or_else(|| {
            req.extensions()
                .get::<crate::gateway::ConnInfo>()
                .and_then(|c| c.subject.as_ref())
                .and_then(|s| node.cert_subjects.get(s))
                .cloned()
        });
    let path_case = req
        .uri()
        .path()
        .strip_prefix("/v1/cases/")
        .map(|c| c.to_string());
    let response = match &principal {
        None => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token (Authorization: Bearer <token>) or a configured client certificate is required",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
        Some(p) if !rule.roles.contains(&p.role) => {
            let allowed: Vec<&str> = rule.roles.iter().map(|r| r.as_str()).collect();
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "role `{}` may not call {} {}; allowed roles: {}",
                    p.role.as_str(),
                    rule.method,
                    rule.path,
                    allowed.join(", ")
                ),
            )
            .into_response()
        }
        Some(p) => match node.api_limits.check(&p.name) {
            Err(wait) => crate::ratelimit::too_many(wait),
            Ok(()) => {
                req.extensions_mut().insert(p.clone());
                next.run(req).await
            }
        },
    };
    let Some(action) = rule.audit else {
        return response;
    };
    if response.extensions().get::<AuditWritten>().is_some() {
        return response;
    }
    let result = if response.status().is_success() {
        "ok".to_string()
    } else {
        format!("refused:{}", response.status().as_u16())
    };
    let touched = response
        .extensions()
        .get::<Audited>()
        .map(|a| a.0.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| vec![(path_case.clone().unwrap_or_default(), None)]);
    let at = node.clock.now_ms();
    let entries: Vec<crate::store::audit::AuditEntry> = touched
        .into_iter()
        .map(|(case_ref, message_id)| crate::store::audit::AuditEntry {
            at,
            actor: principal
                .as_ref()
                .map_or_else(|| "unauthenticated".to_string(), |p| p.name.clone()),
            role: principal
                .as_ref()
                .map_or("none", |p| p.role.as_str())
                .to_string(),
            action: action.to_string(),
            case_ref: (!case_ref.is_empty()).then_some(case_ref),
            message_id,
            result: result.clone(),
        })
        .collect();
    if let Err(e) = node.store.audit(&entries).await {
        warn!(error = %e, "could not write the audit log; withholding the response");
        return ApiError::internal().into_response();
    }
    response
}

/// The OpenAPI 3.1 description of the local and peer APIs.
pub const OPENAPI: &str = include_str!("openapi.json");

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

#[derive(Serialize)]
struct Accepted {
    message_id: String,
    case_ref: String,
    state: &'static str,
    status_url: String,
}

/// Fills what the submitter may leave to the gateway: `message_id` (a new
/// UUIDv7), `created_at` (now) and `from` (this node). Callers that retry
/// should set `message_id` themselves so a retry is recognised as one.
fn fill_defaults(node: &Node, doc: &mut Value) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    obj.entry("message_id")
        .or_insert_with(|| Value::String(uuid::Uuid::now_v7().to_string()));
    obj.entry("created_at").or_insert_with(|| {
        Value::String(
            node.clock
                .now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        )
    });
    obj.entry("from")
        .or_insert_with(|| Value::String(node.country.clone()));
    obj.entry("in_reply_to").or_insert(Value::Null);
}

/// `POST /v1/messages`: validate, check the agreement, commit to the outbox.
/// A 202 means the message is on disk and will be delivered.
async fn submit(
    State(node): State<Arc<Node>>,
    principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, mut doc) =
        read_json_body(&headers, body, node.settings.local_api.max_body_bytes).await?;
    if !doc.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            "a message must be a JSON object",
        ));
    }
    let submit_sha256 = hex::encode(Sha256::digest(serde_json::to_vec(&doc).unwrap_or_default()));
    fill_defaults(&node, &mut doc);
    // The stored text first: validation then takes the document, and its
    // payload moves into the envelope instead of being copied.
    let body = serde_json::to_string(&doc).map_err(|_| ApiError::internal())?;
    let envelope = node.registry.validate_owned(doc).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()).with_details(e.details())
    })?;
    let span = tracing::info_span!("submit", message_id = %envelope.message_id, case_ref = %envelope.case_ref);
    async move {
        if envelope.from != node.country {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong_sender",
                format!(
                    "this gateway is {}; it cannot send as {}",
                    node.country, envelope.from
                ),
            )
            .with_details(vec![Detail {
                pointer: Some("/from".into()),
                keyword: Some("this_node".into()),
                message: format!("must be {}", node.country),
            }]));
        }
        check_case_parties(&envelope)?;
        check_agreement(&node, &envelope)?;
        if node.settings.peer(&envelope.to).is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_peer",
                format!("this gateway has no peer {} configured", envelope.to),
            )
            .with_details(vec![Detail {
                pointer: Some("/to".into()),
                keyword: Some("configured_peer".into()),
                message: format!("no peer {} in the configuration", envelope.to),
            }]));
        }
        let now = node.clock.now_ms();
        let deadline_ms = i64::try_from(
            node.settings
                .delivery
                .deadline_hours
                .saturating_mul(3_600_000),
        )
        .unwrap_or(i64::MAX);
        let new = NewOutbound {
            message_id: envelope.message_id.to_string(),
            case_ref: envelope.case_ref.clone(),
            peer: envelope.to.clone(),
            message_type: envelope.message_type.clone(),
            in_reply_to: envelope.in_reply_to.map(|u| u.to_string()),
            body_sha256: hex::encode(Sha256::digest(body.as_bytes())),
            body,
            submit_sha256,
            submitted_at: now,
            deadline_at: now.saturating_add(deadline_ms),
            case_message: case_message(&envelope),
        };
        let audit_entry = principal.as_ref().map(|p| crate::store::audit::AuditEntry {
            at: now,
            actor: p.name.clone(),
            role: p.role.as_str().to_string(),
            action: "message.submit".to_string(),
            case_ref: Some(new.case_ref.clone()),
            message_id: Some(new.message_id.clone()),
            result: "ok".to_string(),
        });
        let audit_written = audit_entry.is_some();
        let enqueued = node
            .store
            .enqueue_audited(new, audit_entry)
            .await
            .map_err(|e| {
                crate::metrics::Metrics::inc(&node.metrics.store_errors);
                warn!(error = %e, "could not commit to the outbox");
                ApiError::internal()
            })?;
        let fresh = matches!(enqueued, Enqueued::New(_));
        let row = match enqueued {
            Enqueued::New(row) => {
                info!(peer = %row.peer, message_type = %row.message_type, "queued");
                crate::metrics::Metrics::inc(&node.metrics.submitted);
                node.wake.notify_one();
                row
            }
            Enqueued::Replay(row) => row,
            Enqueued::Refused(e) => return Err(lifecycle_refusal(&e)),
            Enqueued::Conflict(_) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "duplicate_message_id",
                    format!(
                        "message_id {} was already used for a different message; use a new id",
                        envelope.message_id
                    ),
                ));
            }
        };
        let audited = Audited(vec![(row.case_ref.clone(), Some(row.message_id.clone()))]);
        let accepted = Accepted {
            status_url: format!("/v1/messages/{}", row.message_id),
            message_id: row.message_id,
            case_ref: row.case_ref,
            state: row.state.as_str(),
        };
        let mut resp = (StatusCode::ACCEPTED, axum::Json(accepted)).into_response();
        resp.extensions_mut().insert(audited);
        if fresh && audit_written {
            resp.extensions_mut().insert(AuditWritten);
        }
        Ok(resp)
    }
    .instrument(span)
    .await
}

/// The agreement between sender and receiver must allow the type in this
/// direction, and the payload must not carry a personal field it withholds.
pub fn check_agreement(node: &Node, envelope: &crate::message::Envelope) -> Result<(), ApiError> {
    let agreement = node
        .agreements
        .permit(&envelope.from, &envelope.to, &envelope.message_type)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "agreement_refused", e.to_string()))?;
    if let Some(pointer) = agreement.withheld_in(&envelope.message_type, &envelope.payload) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "personal_data_withheld",
            format!(
                "agreement `{}` ({}) does not allow sharing `{pointer}` in `{}`",
                agreement.id, agreement.title, envelope.message_type
            ),
        )
        .with_details(vec![Detail {
            pointer: Some(format!("/payload{pointer}")),
            keyword: Some("agreement_withheld".into()),
            message: "remove this field: the agreement withholds it".into(),
        }]));
    }
    Ok(())
}

/// The lifecycle's view of an envelope.
pub fn case_message(envelope: &crate::message::Envelope) -> crate::lifecycle::CaseMessage {
    crate::lifecycle::CaseMessage {
        message_id: envelope.message_id.to_string(),
        message_type: envelope.message_type.clone(),
        from: envelope.from.clone(),
        in_reply_to: envelope.in_reply_to.map(|u| u.to_string()),
        payload: envelope.payload.clone(),
    }
}

/// A lifecycle refusal as an API error: 409, naming the state and what may come next.
pub fn lifecycle_refusal(e: &crate::lifecycle::LifecycleError) -> ApiError {
    use crate::lifecycle::LifecycleError as L;
    let (pointer, keyword) = match e {
        L::NotAllowed { .. } => ("/type", "case_state"),
        L::WrongSide { .. } => ("/from", "case_side"),
        L::Duplicate { .. } => ("/message_id", "unique"),
        _ => ("/in_reply_to", "reply_target"),
    };
    ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()).with_details(vec![Detail {
        pointer: Some(pointer.into()),
        keyword: Some(keyword.into()),
        message: e.to_string(),
    }])
}

/// The case reference names the two countries of the case; a message of the
/// case must travel between those two.
pub fn check_case_parties(envelope: &crate::message::Envelope) -> Result<(), ApiError> {
    let ok = envelope.case_parties().is_some_and(|(a, b)| {
        (a == envelope.from && b == envelope.to) || (a == envelope.to && b == envelope.from)
    });
    if ok {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "case_ref_mismatch",
        format!(
            "case {} does not belong to {} and {}",
            envelope.case_ref, envelope.from, envelope.to
        ),
    )
    .with_details(vec![Detail {
        pointer: Some("/case_ref".into()),
        keyword: Some("case_parties".into()),
        message: "the case reference must start with the two countries exchanging the message"
            .into(),
    }]))
}

fn parse_json_text(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

fn outbound_view(row: &OutboxRow) -> Value {
    json!({
        "direction": "outbound",
        "message_id": row.message_id,
        "case_ref": row.case_ref,
        "type": row.message_type,
        "to": row.peer,
        "in_reply_to": row.in_reply_to,
        "state": row.state,
        "attempts": row.attempts,
        "submitted_at": rfc3339_ms(row.submitted_at),
        "next_attempt_at": matches!(row.state, crate::store::OutState::Queued | crate::store::OutState::Delivering)
            .then(|| rfc3339_ms(row.next_attempt_at)),
        "delivered_at": row.delivered_at.map(rfc3339_ms),
        "delivery_deadline": rfc3339_ms(row.deadline_at),
        "last_error": parse_json_text(row.last_error.as_deref()),
        "receipt": parse_json_text(row.receipt.as_deref()),
    })
}

fn inbound_view(row: &InboxRow) -> Value {
    json!({
        "direction": "inbound",
        "message_id": row.message_id,
        "case_ref": row.case_ref,
        "type": row.message_type,
        "from": row.sender,
        "in_reply_to": row.in_reply_to,
        "state": "received",
        "received_at": rfc3339_ms(row.received_at),
        "receipt": parse_json_text(Some(&row.receipt)),
    })
}

/// `GET /v1/messages/{id}`: where a message stands.
async fn message_status(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_message_id",
                "message id must be a UUID",
            )
        })?
        .to_string();
    let (view, case_ref) = if let Some(row) = node
        .store
        .outbound(&id)
        .await
        .map_err(|_| ApiError::internal())?
    {
        (outbound_view(&row), row.case_ref)
    } else if let Some(row) = node
        .store
        .inbound(&id)
        .await
        .map_err(|_| ApiError::internal())?
    {
        (inbound_view(&row), row.case_ref)
    } else {
        return Err(ApiError::not_found("message"));
    };
    let mut resp = axum::Json(view).into_response();
    resp.extensions_mut()
        .insert(Audited(vec![(case_ref, Some(id))]));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/inbox?after=<cursor>&limit=<n>`: received messages in arrival
/// order. Pass the last `next_cursor` back as `after` to read on.
async fn inbox(
    State(node): State<Arc<Node>>,
    query: Result<Query<InboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "`after` must be a cursor returned by this feed",
            )
        })?,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    let rows = node
        .store
        .inbox_after(after, limit)
        .await
        .map_err(|_| ApiError::internal())?;
    let next = rows.last().map(|r| r.seq).unwrap_or(after);
    let messages: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "cursor": r.seq.to_string(),
                "message_id": r.message_id,
                "case_ref": r.case_ref,
                "type": r.message_type,
                "from": r.sender,
                "in_reply_to": r.in_reply_to,
                "received_at": rfc3339_ms(r.received_at),
                "receipt": parse_json_text(Some(&r.receipt)),
                "envelope": parse_json_text(Some(&r.body)),
            })
        })
        .collect();
    let mut resp = axum::Json(json!({ "messages": messages, "next_cursor": next.to_string() }))
        .into_response();
    resp.extensions_mut().insert(Audited(
        rows.iter()
            .map(|r| (r.case_ref.clone(), Some(r.message_id.clone())))
            .collect(),
    ));
    Ok(resp)
}

/// `GET /v1/cases/{case_ref}`: every message of the case this node sent or
/// received, in time order, with delivery state and receipts. No payloads.
async fn case_timeline(
    State(node): State<Arc<Node>>,
    Path(case_ref): Path<String>,
) -> Result<Response, ApiError> {
    let (out, inb) = node
        .store
        .case_messages(&case_ref)
        .await
        .map_err(|_| ApiError::internal())?;
    if out.is_empty() && inb.is_empty() {
        return Err(ApiError::not_found("case"));
    }
    let mut timeline: Vec<(i64, Value)> = out
        .iter()
        .map(|r| (r.submitted_at, outbound_view(r)))
        .chain(inb.iter().map(|r| (r.received_at, inbound_view(r))))
        .collect();
    timeline.sort_by_key(|(at, _)| *at);
    let state = node
        .store
        .case_state(&case_ref)
        .await
        .map_err(|_| ApiError::internal())?;
    let timers = node
        .store
        .case_timers(&case_ref)
        .await
        .map_err(|_| ApiError::internal())?;
    let events = node
        .store
        .case_events(&case_ref)
        .await
        .map_err(|_| ApiError::internal())?;
    Ok(axum::Json(json!({
        "case_ref": case_ref,
        "node": node.country,
        "state": state,
        "allowed_next": crate::lifecycle::allowed_next(state),
        "timers": timers.iter().map(timer_view).collect::<Vec<_>>(),
        "events": events.iter().map(|e| json!({
            "kind": e.kind, "message_id": e.message_id, "at": rfc3339_ms(e.at), "detail": e.detail,
        })).collect::<Vec<_>>(),
        "timeline": timeline.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /v1/validate`: the report `homeward validate` prints, for a message
/// as this node would receive it for submission. Nothing is stored or sent.
async fn validate(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, mut doc) =
        read_json_body(&headers, body, node.settings.local_api.max_body_bytes).await?;
    if !doc.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            "a message must be a JSON object",
        ));
    }
    fill_defaults(&node, &mut doc);
    let mut violations: Vec<Detail> = Vec::new();
    match node.registry.validate(&doc) {
        Err(e) => violations.extend(e.details()),
        Ok(envelope) => {
            if let Err(e) = check_case_parties(&envelope) {
                violations.extend(e.body.details);
            }
            if let Err(e) = check_agreement(&node, &envelope) {
                violations.extend(e.body.details.clone());
                if e.body.details.is_empty() {
                    violations.push(Detail {
                        pointer: Some("/type".into()),
                        keyword: Some("agreement".into()),
                        message: e.body.message,
                    });
                }
            }
        }
    }
    Ok(
        axum::Json(json!({ "valid": violations.is_empty(), "violations": violations }))
            .into_response(),
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

fn timer_view(t: &crate::store::timers::TimerRow) -> Value {
    json!({
        "id": t.id,
        "case_ref": t.case_ref,
        "message_id": t.message_id,
        "type": t.message_type,
        "expected_type": t.expected_type,
        "side": t.side,
        "peer": t.peer,
        "agreement": t.agreement,
        "state": t.state,
        "started_at": rfc3339_ms(t.started_at),
        "due_at": rfc3339_ms(t.due_at),
        "reminders_fired": t.reminders_fired,
        "next_event_at": t.next_event_at.map(rfc3339_ms),
        "breached_at": t.breached_at.map(rfc3339_ms),
        "answered_at": t.answered_at.map(rfc3339_ms),
        "answer_id": t.answer_id,
        "met_late": t.state == "met" && (t.breached_at.is_some() || t.answered_at.unwrap_or(0) > t.due_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerQuery {
    state: Option<String>,
    peer: Option<String>,
    due_before: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/timers?state=open|breached|met|overdue&peer=TH&due_before=<RFC 3339>&after=<cursor>&limit=<n>`.
/// `overdue` means open or breached with the due time passed.
async fn list_timers(
    State(node): State<Arc<Node>>,
    query: Result<Query<TimerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
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
    let state = match q.state.as_deref() {
        None => None,
        Some(s @ ("open" | "met" | "breached")) => Some(s.to_string()),
        Some("overdue") => {
            let now = node.clock.now_ms();
            due_before = Some(due_before.map_or(now, |d| d.min(now)));
            None
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("`state` must be open, breached, met or overdue, not `{other}`"),
            ));
        }
    };
    let overdue = q.state.as_deref() == Some("overdue");
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    let filter = crate::store::timers::TimerFilter {
        state,
        peer: q.peer.map(|p| p.to_ascii_uppercase()),
        due_before,
        after_id: q.after.unwrap_or(0),
        limit,
    };
    let rows = node
        .store
        .timers(&filter)
        .await
        .map_err(|_| ApiError::internal())?;
    let next = rows.last().map(|t| t.id);
    let timers: Vec<Value> = rows
        .iter()
        .filter(|t| !overdue || t.state != "met")
        .map(timer_view)
        .collect();
    Ok(axum::Json(json!({ "timers": timers, "next_cursor": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaQuery {
    days: Option<i64>,
}

/// `GET /v1/sla?days=<n>`: per agreement and type, over timers started in
/// the last `days` (default 90): count, met on time, met late, open,
/// breached, median and p90 time to answer.
async fn sla(
    State(node): State<Arc<Node>>,
    query: Result<Query<SlaQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
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
    let timers = node
        .store
        .timers_since(since)
        .await
        .map_err(|_| ApiError::internal())?;
    let mut body = crate::timers::sla(&timers, now);
    body["node"] = json!(node.country);
    body["since"] = json!(rfc3339_ms(since));
    body["until"] = json!(rfc3339_ms(now));
    Ok(axum::Json(body).into_response())
}

/// `POST /v1/outbox/{id}/retry`: re-queue a `dead` or `rejected` message.
async fn retry_message(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_message_id",
                "message id must be a UUID",
            )
        })?
        .to_string();
    let now = node.clock.now_ms();
    let deadline = now
        .saturating_add((node.settings.delivery.deadline_hours as i64).saturating_mul(3_600_000));
    if node
        .store
        .requeue(&id, now, deadline)
        .await
        .map_err(|_| ApiError::internal())?
    {
        node.wake.notify_one();
        info!(message_id = %id, "re-queued by an operator");
        let case_ref = node
            .store
            .outbound(&id)
            .await
            .ok()
            .flatten()
            .map(|r| r.case_ref)
            .unwrap_or_default();
        let mut resp = (
            StatusCode::ACCEPTED,
            axum::Json(json!({"message_id": id, "state": "queued"})),
        )
            .into_response();
        resp.extensions_mut()
            .insert(Audited(vec![(case_ref, Some(id))]));
        return Ok(resp);
    }
    match node
        .store
        .outbound(&id)
        .await
        .map_err(|_| ApiError::internal())?
    {
        None => Err(ApiError::not_found("message")),
        Some(row) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_retryable",
            format!(
                "message is `{}`; only dead or rejected messages can be re-queued",
                row.state.as_str()
            ),
        )),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let outbox = node
        .store
        .outbox_counts()
        .await
        .map_err(|_| ApiError::internal())?;
    let timers = node
        .store
        .timer_counts()
        .await
        .map_err(|_| ApiError::internal())?;
    let out = node.metrics.render(&outbox, &timers);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    case_ref: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/audit?case_ref=&after=&limit=`: the audit log (admin).
async fn audit_log(
    State(node): State<Arc<Node>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    let rows = node
        .store
        .audit_rows(q.case_ref.as_deref(), q.after.unwrap_or(0), limit)
        .await
        .map_err(|_| ApiError::internal())?;
    let next = rows.last().map(|r| r.seq);
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq, "at": rfc3339_ms(r.at), "actor": r.actor, "role": r.role, "action": r.action,
                "case_ref": r.case_ref, "message_id": r.message_id, "result": r.result, "hash": r.hash,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "records": records, "next_cursor": next })).into_response())
}

/// The operators' dashboard page (static; its data comes from `/v1/dashboard`).
async fn dashboard_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

/// `GET /v1/dashboard`: what an operator needs at a glance, no personal data.
async fn dashboard(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let store = &node.store;
    let err = |_| ApiError::internal();
    let now = node.clock.now_ms();
    let counts = store.outbox_counts().await.map_err(err)?;
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
    let pending = store.oldest_pending().await.map_err(err)?;
    let oldest = pending.map(|r| {
        json!({
            "message_id": r.message_id, "case_ref": r.case_ref, "type": r.message_type, "peer": r.peer,
            "attempts": r.attempts, "submitted_at": rfc3339_ms(r.submitted_at),
            "age_seconds": (now - r.submitted_at).max(0) as f64 / 1000.0,
        })
    });
    let timer_counts = store.timer_counts().await.map_err(err)?;
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
        .await
        .map_err(err)?;
    let mut due_soon = store
        .timers(&crate::store::timers::TimerFilter {
            state: Some("open".into()),
            due_before: Some(now + 48 * 3_600_000),
            limit: 200,
            ..Default::default()
        })
        .await
        .map_err(err)?;
    due_soon.sort_by_key(|t| t.due_at);
    due_soon.truncate(20);
    let mut failed = store.outbox_list(Some("rejected"), 20).await.map_err(err)?;
    failed.extend(store.outbox_list(Some("dead"), 20).await.map_err(err)?);
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
