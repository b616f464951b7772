//! The one error body every refusal uses, on both the local and the peer API:
//! `{"error": {"code", "message", "details": [...]}}` ([`crate::protocol::ErrorBody`]).
//! `code` is stable and meant for machines; `message` is for people;
//! `details` lists each problem (a JSON pointer and the rule). Here the
//! domain's refusals and the store's failures get their HTTP status.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::node::Node;
use crate::domain::admission::Refusal;
use crate::domain::officer::OfficerError;
pub use crate::protocol::{Detail, ErrorBody, ErrorEnvelope};
use crate::store::StoreError;

/// A refusal with its HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Set when the store failed: the response is marked so the router's
    /// [`count_store_failures`] layer counts it.
    store_failed: bool,
}

/// Marks a response that a store failure caused.
#[derive(Debug, Clone, Copy)]
struct StoreFailed;

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                details: Vec::new(),
            },
            store_failed: false,
        }
    }

    pub fn with_details(mut self, details: Vec<Detail>) -> Self {
        self.body.details = details;
        self
    }

    /// The store could not be reached: 503, nothing was accepted.
    pub fn store_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the gateway could not reach its store; nothing was accepted, retry later",
        );
        e.store_failed = true;
        e
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// The standard 429 refusal, with `Retry-After` in whole seconds.
    pub fn too_many(wait: Duration) -> Response {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {secs} s"),
        )
        .into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }

    /// The error body as JSON text (`{"error": {...}}`).
    pub fn to_json_text(&self) -> String {
        serde_json::to_string(&ErrorEnvelope {
            error: self.body.clone(),
        })
        .unwrap_or_default()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::NotAnObject | Refusal::Schema(_) | Refusal::OfficerRequired { .. } => {
                StatusCode::BAD_REQUEST
            }
            Refusal::SenderMismatch { .. }
            | Refusal::WrongReceiver { .. }
            | Refusal::Agreement(_)
            | Refusal::Withheld { .. }
            | Refusal::MissionNotAllowed { .. } => StatusCode::FORBIDDEN,
            Refusal::CaseNotVisible => StatusCode::NOT_FOUND,
            // Schema-valid, but wrong for this node or this case.
            Refusal::WrongSender { .. }
            | Refusal::UnknownPeer { .. }
            | Refusal::CaseParties { .. }
            | Refusal::ConsentWithheld { .. }
            | Refusal::ConsentViolation { .. }
            | Refusal::LawfulBasis { .. }
            | Refusal::SentByReserved
            | Refusal::VersionNotAgreed { .. }
            | Refusal::UnknownGate { .. }
            | Refusal::Correction(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Lifecycle(_) | Refusal::DuplicateMessageId { .. } => StatusCode::CONFLICT,
            // Whatever is wrong with a signature, the message is not
            // accepted as the sender's.
            Refusal::Signature { .. } => StatusCode::FORBIDDEN,
        };
        Self::new(status, r.code(), r.to_string()).with_details(r.details())
    }
}

impl From<OfficerError> for ApiError {
    /// A malformed `On-Behalf-Of` header: 400 naming the header and its rule.
    fn from(e: OfficerError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_officer",
            format!("the On-Behalf-Of header is not an officer id: {e}"),
        )
        .with_details(vec![Detail {
            pointer: None,
            keyword: Some("On-Behalf-Of".into()),
            message: crate::domain::officer::RULE.into(),
        }])
    }
}

impl From<StoreError> for ApiError {
    /// Logs the whole cause chain (an operator must see why) and answers
    /// the standard 503; the response is counted in
    /// `homeward_store_errors_total` by [`count_store_failures`].
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %crate::telemetry::error_chain(&e), "store failure; answered 503");
        Self::store_unavailable()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let failed = self.store_failed;
        let body = ErrorEnvelope { error: self.body };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if failed {
            resp.extensions_mut().insert(StoreFailed);
        }
        resp
    }
}

/// Router layer: counts every response a store failure caused.
pub async fn count_store_failures(
    State(node): State<Arc<Node>>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    if resp.extensions().get::<StoreFailed>().is_some() {
        node.metrics.store_errors.inc();
    }
    resp
}

/// Reads a JSON request body: checks the content type and the size limit and
/// parses it, each failure a clear 4xx.
pub async fn read_json_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: Duration,
) -> Result<(axum::body::Bytes, serde_json::Value), ApiError> {
    let bytes = read_json_bytes(headers, body, limit, timeout).await?;
    let value = serde_json::from_slice(&bytes).map_err(malformed_json)?;
    Ok((bytes, value))
}

/// The 400 of a body that is not JSON.
pub fn malformed_json(e: serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        format!("request body is not valid JSON: {e}"),
    )
}

/// The bytes of a request body declared as JSON, for a handler that
/// parses them itself: checks the content type and the size limit, each
/// failure a clear 4xx.
pub async fn read_json_bytes(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type application/json, got `{content_type}`"),
        ));
    }
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    read_bounded(body, limit, announced, timeout).await
}

/// Most bytes read and thrown away after a body is refused as too large.
/// Reading the rest lets a client that sends its whole body before it
/// reads the answer (Python's `urllib`, HTTP/2 streams) see the `413`
/// instead of a reset connection; past this, the connection is cut.
const DRAIN_MAX: u64 = 256 * 1024 * 1024;

/// The body, at most `limit` bytes of it, within `timeout`. A body over
/// the limit (announced by `Content-Length` or found while reading) is not
/// kept: the rest is read and dropped, up to [`DRAIN_MAX`] and the same
/// deadline, and the answer is `413`.
async fn read_bounded(
    body: axum::body::Body,
    limit: usize,
    announced: Option<u64>,
    timeout: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    let mut over = announced.is_some_and(|n| n > limit as u64);
    // One deadline for the whole body (one timer, not one per frame).
    match tokio::time::timeout(timeout, read_frames(body, limit, &mut over)).await {
        Ok(Ok(bytes)) if !over => Ok(bytes),
        Ok(Ok(_)) => Err(too_large_error(limit)),
        Ok(Err(e)) => Err(e),
        // Too large is the answer that matters, late or not.
        Err(_) if over => Err(too_large_error(limit)),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )),
    }
}

/// Reads `body` to its end, keeping it while it fits in `limit` and
/// `over` is false; once over, drops what comes, up to [`DRAIN_MAX`].
async fn read_frames(
    mut body: axum::body::Body,
    limit: usize,
    over: &mut bool,
) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    // Most bodies are one frame: kept as it came, copied only if a second
    // frame follows.
    let mut first: Option<axum::body::Bytes> = None;
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("could not read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len() as u64);
        if !*over && seen > limit as u64 {
            *over = true;
            first = None;
            kept = Vec::new();
        }
        if *over {
            if seen > DRAIN_MAX {
                break;
            }
            continue;
        }
        match first.take() {
            None if kept.is_empty() => first = Some(data),
            None => kept.extend_from_slice(&data),
            Some(earlier) => {
                kept.extend_from_slice(&earlier);
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| kept.into()))
}

fn too_large_error(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds the limit of {limit} bytes"),
    )
}
