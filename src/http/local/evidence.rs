//! A case's evidence bundle, for the admin role only (it holds personal
//! data); each export is audited (`evidence.export`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::access::{AuditTrail, Routes};
use crate::app::node::Node;
use crate::domain::access::Role::*;
use crate::evidence::{self, Bundle, ExportError};
use crate::http::error::ApiError;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new().route(
        __path_case_evidence,
        &[Admin],
        Some("evidence.export"),
        case_evidence,
    )
}

/// The schemas of this module's answers.
pub(super) fn schemas(doc: &mut crate::http::openapi::Document) {
    doc.schema::<Bundle>();
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::NoSuchCase { .. } => ApiError::not_found("case"),
            ExportError::Purged { .. } => {
                ApiError::new(StatusCode::CONFLICT, "case_purged", e.to_string())
            }
            ExportError::Incomplete { .. } | ExportError::SignerNode { .. } => {
                tracing::error!(error = %e, "cannot export a case's evidence");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the case's evidence cannot be exported; see the gateway's log",
                )
            }
            ExportError::Store(e) => e.into(),
        }
    }
}

/// A case's evidence bundle.
///
/// Every message of the case this node sent or received, in the case's
/// order: the envelope's exact bytes, the sender's signature, the
/// receiver's receipt bytes and signature, the certificates of those
/// signatures, and the case's audit records, with a manifest of each part's
/// SHA-256 signed by this node (`homeward-evidence+jws`). Anyone holding the
/// countries' CA certificates checks it offline: `homeward evidence verify
/// FILE --trust DIR`. It holds personal data.
#[utoipa::path(
    get, path = "/v1/cases/{case_ref}/evidence", operation_id = "exportEvidence",
    params(("case_ref" = String, Path, description = "The case reference, e.g. TH-KH-2026-000042")),
    responses(
        (status = 200, description = "The bundle (also what `homeward evidence export` writes)", body = Bundle),
        (status = 404, description = "No message of this case here (not_found)", body = ErrorEnvelope),
        (status = 409, description = "The case's payloads were purged under its agreement's retention (case_purged), or this node has no signing key (no_signing_key)", body = ErrorEnvelope),
        (status = 500, description = "The store holds a message of the case without its envelope, or the signing certificate names another node (internal)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn case_evidence(
    State(node): State<Arc<Node>>,
    trail: AuditTrail,
    Path(case_ref): Path<String>,
) -> Result<Response, ApiError> {
    trail.touched(&case_ref, None);
    let credentials = node.credentials();
    let signer = credentials.signer.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_signing_key",
            "this node has no signing key (tls.sign_cert): a bundle's manifest must be signed",
        )
    })?;
    let bundle = evidence::export(
        &node.store,
        signer,
        &node.country,
        &case_ref,
        node.clock.now_ms(),
    )
    .await?;
    let mut response = axum::Json(bundle).into_response();
    // Saved as a file by browsers and `curl -OJ`; the reference is
    // restricted to what a file name may hold.
    let name: String = case_ref
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"evidence-{name}.json\""))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
