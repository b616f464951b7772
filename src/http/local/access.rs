//! Who may call which local API route, and the audit record of every call
//! that touches case data. Each resource module declares its routes with
//! their roles and audit action through [`Routes`], in one place; the
//! guard below enforces them.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use tracing::warn;
use utoipa::openapi::HttpMethod;
use utoipa::openapi::path::Operation;

use crate::app::node::Node;
use crate::domain::access::{Role, hash_token};
use crate::domain::officer::{OfficerError, OfficerId};
use crate::http::error::ApiError;

/// One route and the roles allowed on it; an empty list means public.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub method: Method,
    pub path: String,
    pub roles: &'static [Role],
    /// The audit action this route records, if it reads or changes case data.
    pub audit: Option<&'static str>,
}

/// One declared route: its rule, its handler and its OpenAPI operation.
struct Entry {
    rule: Arc<RouteRule>,
    handler: MethodRouter<Arc<Node>>,
    operation: Operation,
}

/// Routes with their access rules, as a resource module declares them:
/// method, path and documentation come from the handler's
/// `#[utoipa::path]`, so what is served, guarded and documented is one
/// declaration.
pub struct Routes {
    entries: Vec<Entry>,
}

impl Routes {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Adds `handler`, documented by `doc` (the handler's `__path_` type),
    /// callable by `roles` (none: public), recording `audit` when it
    /// touches case data.
    pub fn route<D, H, T>(
        mut self,
        _doc: D,
        roles: &'static [Role],
        audit: Option<&'static str>,
        handler: H,
    ) -> Self
    where
        D: utoipa::Path,
        H: Handler<T, Arc<Node>>,
        T: 'static,
    {
        let methods = D::methods();
        assert_eq!(methods.len(), 1, "one method per declared route");
        let method = http_method(&methods[0]);
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        let rule = RouteRule {
            method,
            path: D::path(),
            roles,
            audit,
        };
        self.entries.push(Entry {
            rule: Arc::new(rule),
            handler: axum::routing::on(filter, handler),
            operation: D::operation(),
        });
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.entries.extend(other.entries);
        self
    }

    pub fn rules(&self) -> Vec<RouteRule> {
        self.entries.iter().map(|e| (*e.rule).clone()).collect()
    }

    /// Each route's rule with its documented operation.
    pub fn operations(&self) -> impl Iterator<Item = (&RouteRule, &Operation)> {
        self.entries.iter().map(|e| (&*e.rule, &e.operation))
    }

    /// The router, each route behind its own guard.
    pub fn into_router(self, node: &Arc<Node>) -> Router<Arc<Node>> {
        self.entries.into_iter().fold(Router::new(), |router, e| {
            let path = e.rule.path.clone();
            let guarded = e.handler.route_layer(middleware::from_fn_with_state(
                (node.clone(), e.rule),
                authorize,
            ));
            router.route(&path, guarded)
        })
    }
}

fn http_method(m: &HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Trace => Method::TRACE,
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

/// The contract between the guard and a handler of an audited route: the
/// guard hands the handler a trail (an extractor), the handler records on
/// it each case and message it read or changed, and once the handler has
/// answered, the guard writes one audit record per entry, with the
/// answer's result, or the entry's own (one item of a batch). A route
/// whose handler records nothing is audited against the case in its path.
#[derive(Debug, Clone, Default)]
pub struct AuditTrail(Arc<Mutex<Trail>>);

#[derive(Debug, Default)]
struct Trail {
    touched: Vec<Touched>,
    /// The handler committed the records of the entries without a result of
    /// their own itself, in the transaction of what they audit (a fresh
    /// submission).
    written: bool,
}

/// One entry of a trail: a case (empty: none) and message, and the result
/// to record when it is not the answer's.
#[derive(Debug, Clone)]
struct Touched {
    case_ref: String,
    message_id: Option<String>,
    result: Option<String>,
}

impl AuditTrail {
    /// The handler read or changed `message_id` (or the whole case).
    pub fn touched(&self, case_ref: &str, message_id: Option<&str>) {
        self.lock().touched.push(Touched {
            case_ref: case_ref.to_string(),
            message_id: message_id.map(str::to_string),
            result: None,
        });
    }

    /// One item of a batch answered `status` within the answer (which is
    /// `200` whatever became of each): recorded with its own result, `ok`
    /// or `refused:<status>`, and its case and message when known. Written
    /// by the guard even when [`AuditTrail::written`] was called.
    pub fn settled(&self, case_ref: Option<&str>, message_id: Option<&str>, status: StatusCode) {
        self.lock().touched.push(Touched {
            case_ref: case_ref.unwrap_or_default().to_string(),
            message_id: message_id.map(str::to_string),
            result: Some(result_of(status)),
        });
    }

    /// The audit records of the entries without a result of their own were
    /// committed with the change they record.
    pub fn written(&self) {
        self.lock().written = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Trail> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditTrail {
    type Rejection = std::convert::Infallible;

    /// The guard's trail; on a route it does not audit, a trail nobody reads.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<AuditTrail>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The header naming the officer a caller acts for.
pub const ON_BEHALF_OF: &str = "on-behalf-of";

/// The officer the request names, if any. Repeating the header is refused
/// rather than picking one: the audit must name the one who acted.
fn officer_of(headers: &header::HeaderMap) -> Result<Option<OfficerId>, OfficerError> {
    let mut values = headers.get_all(ON_BEHALF_OF).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OfficerError::Several);
    }
    OfficerId::parse(value.as_bytes()).map(Some)
}

/// Authenticates the bearer token or client certificate, checks the route's
/// roles, the caller's rate and the officer it names (`On-Behalf-Of`), and
/// writes the audit record of routes that touch case data (refusals
/// included, with the officer when its id was well formed). If the audit
/// record cannot be written the response is withheld (fail closed).
async fn authorize(
    State((node, rule)): State<(Arc<Node>, Arc<RouteRule>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let trail = AuditTrail::default();
    let officer = officer_of(req.headers());
    if rule.roles.is_empty() {
        return match officer {
            Err(e) => ApiError::from(e).into_response(),
            Ok(_) => next.run(req).await,
        };
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
    // The case a `/v1/cases/{case_ref}[/...]` route is about.
    let path_case = req
        .uri()
        .path()
        .strip_prefix("/v1/cases/")
        .and_then(|c| c.split('/').next())
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
        Some(p) => match (node.api_limits.check(&p.name), &officer) {
            (Err(wait), _) => ApiError::too_many(wait),
            (Ok(()), Err(e)) => ApiError::from(e.clone()).into_response(),
            (Ok(()), Ok(o)) => {
                req.extensions_mut().insert(p.clone());
                req.extensions_mut().insert(trail.clone());
                if let Some(o) = o {
                    req.extensions_mut().insert(o.clone());
                }
                next.run(req).await
            }
        },
    };
    let Some(action) = rule.audit else {
        return response;
    };
    let (mut touched, written) = {
        let t = trail.lock();
        (t.touched.clone(), t.written)
    };
    if written {
        touched.retain(|t| t.result.is_some());
        if touched.is_empty() {
            return response;
        }
    }
    let result = result_of(response.status());
    let touched = if touched.is_empty() {
        vec![Touched {
            case_ref: path_case.clone().unwrap_or_default(),
            message_id: None,
            result: None,
        }]
    } else {
        touched
    };
    // A malformed id is not kept: it is not an officer id, and it may be
    // anything (a name typed in the wrong field).
    let officer = officer.ok().flatten().map(OfficerId::into_string);
    let at = node.clock.now_ms();
    let entries: Vec<crate::store::audit::AuditEntry> = touched
        .into_iter()
        .map(|t| crate::store::audit::AuditEntry {
            at,
            actor: principal
                .as_ref()
                .map_or_else(|| "unauthenticated".to_string(), |p| p.name.clone()),
            role: principal
                .as_ref()
                .map_or("none", |p| p.role.as_str())
                .to_string(),
            action: action.to_string(),
            case_ref: (!t.case_ref.is_empty()).then_some(t.case_ref),
            message_id: t.message_id,
            result: t.result.unwrap_or_else(|| result.clone()),
            officer: officer.clone(),
        })
        .collect();
    if let Err(e) = node.store.audit(&entries).await {
        warn!(error = %e, "could not write the audit log; withholding the response");
        return ApiError::store_unavailable().into_response();
    }
    response
}

/// The audit result of an answer: `ok`, or `refused:<status>`.
fn result_of(status: StatusCode) -> String {
    if status.is_success() {
        "ok".to_string()
    } else {
        format!("refused:{}", status.as_u16())
    }
}
