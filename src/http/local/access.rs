//! Who may call which local API route, and the audit record of every call
//! that touches case data. Each resource module declares its routes with
//! their roles and audit action through [`Routes`], in one place; the
//! guard below enforces them.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tracing::warn;

use crate::app::node::Node;
use crate::domain::access::{Role, hash_token};
use crate::http::error::ApiError;

/// One route and the roles allowed on it; an empty list means public.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub method: Method,
    pub path: &'static str,
    pub roles: &'static [Role],
    /// The audit action this route records, if it reads or changes case data.
    pub audit: Option<&'static str>,
}

/// Routes with their access rules, as a resource module declares them.
pub struct Routes {
    entries: Vec<(Arc<RouteRule>, MethodRouter<Arc<Node>>)>,
}

impl Routes {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Adds `handler` for `method path`, callable by `roles` (none: public),
    /// recording `audit` when it touches case data.
    pub fn route(
        mut self,
        method: Method,
        path: &'static str,
        roles: &'static [Role],
        audit: Option<&'static str>,
        handler: MethodRouter<Arc<Node>>,
    ) -> Self {
        let rule = RouteRule {
            method,
            path,
            roles,
            audit,
        };
        self.entries.push((Arc::new(rule), handler));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.entries.extend(other.entries);
        self
    }

    pub fn rules(&self) -> Vec<RouteRule> {
        self.entries.iter().map(|(r, _)| (**r).clone()).collect()
    }

    /// The router, each route behind its own guard.
    pub fn into_router(self, node: &Arc<Node>) -> Router<Arc<Node>> {
        self.entries
            .into_iter()
            .fold(Router::new(), |router, (rule, handler)| {
                let path = rule.path;
                let guarded = handler.route_layer(middleware::from_fn_with_state(
                    (node.clone(), rule),
                    authorize,
                ));
                router.route(path, guarded)
            })
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

/// What a handler tells the audit log about the case data it touched.
#[derive(Debug, Clone, Default)]
pub struct Audited(pub Vec<(String, Option<String>)>);

/// Set by a handler that wrote its audit record itself, in its own
/// transaction (a committed submission).
#[derive(Debug, Clone, Copy)]
pub struct AuditWritten;

/// Authenticates the bearer token or client certificate, checks the route's
/// roles and the caller's rate, and writes the audit record of routes that
/// touch case data (refusals included). If the audit record cannot be
/// written the response is withheld (fail closed).
async fn authorize(
    State((node, rule)): State<(Arc<Node>, Arc<RouteRule>)>,
    mut req: Request,
    next: Next,
) -> Response {
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
                .get::<crate::tls::ConnInfo>()
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
            Err(wait) => ApiError::too_many(wait),
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
        return ApiError::store_unavailable().into_response();
    }
    response
}
