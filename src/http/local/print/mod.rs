//! The printed documents of a case, for caseworkers: the bilingual
//! handover record (`GET /v1/cases/{case_ref}/handover`, HTML or PDF) and
//! the person's own timeline (`GET /v1/cases/{case_ref}/timeline-for-person`)
//! in their language. Each read is audited (`handover.print`,
//! `timeline.print`). The pages carry a policy of their own: no script,
//! nothing loaded, only their inline style.

mod handover;
mod page;
mod timeline;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::Routes;
use super::params;
use crate::app::node::Node;
use crate::app::pdf::{self, PdfError};
use crate::app::printed::{self, PrintError};
use crate::domain::access::Role::*;
use crate::domain::handover::HandoverError;
use crate::domain::i18n::{Lang, languages_of};
use crate::domain::ids::CaseRef;
use crate::http::error::ApiError;
use crate::protocol::ErrorEnvelope;

pub(super) fn routes() -> Routes {
    Routes::new()
        .route(
            __path_handover_record,
            &[Caseworker],
            Some("handover.print"),
            handover_record,
        )
        .route(
            __path_person_timeline,
            &[Caseworker],
            Some("timeline.print"),
            person_timeline,
        )
}

impl From<PrintError> for ApiError {
    fn from(e: PrintError) -> Self {
        match e {
            PrintError::NoSuchCase { .. } => ApiError::not_found("case"),
            PrintError::Handover(e @ HandoverError::NoHandover { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_handover", e.to_string())
            }
            PrintError::Handover(e @ HandoverError::Purged { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "handover_purged", e.to_string())
            }
            PrintError::Store(e) => e.into(),
        }
    }
}

impl From<PdfError> for ApiError {
    fn from(e: PdfError) -> Self {
        match e {
            PdfError::Unavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "pdf_unavailable",
                e.to_string(),
            ),
            PdfError::Timeout { .. } | PdfError::Failed(_) => {
                tracing::error!(error = %e, "a PDF did not render");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "pdf_failed", e.to_string())
            }
        }
    }
}

/// How the handover record is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PrintFormat {
    Html,
    Pdf,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HandoverQuery {
    /// `html` (the default) or `pdf` (rendered by headless Chromium).
    #[param(inline, value_type = Option<PrintFormat>)]
    format: Option<String>,
}

/// A language of the printed documents.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used
enum PrintLang {
    En,
    Km,
    Th,
    Vi,
    Ms,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    /// The person's language; by default that of the case's origin
    /// country (KH km, TH th, VN vi, MY ms).
    #[param(inline, value_type = Option<PrintLang>)]
    lang: Option<String>,
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, page::policy()),
        ],
        body,
    )
        .into_response()
}

/// The case's handover record, printable.
///
/// The case's last `repatriation.handover` (record `handover`) with the
/// countersignature that answers it: both sides' agencies and officers,
/// place and time, each person (name in their own script and in Latin
/// script, sex, age band; from the case's `repatriation.request`, else its
/// `referral.notify`), documents, belongings, and signature lines for both
/// sides. Labelled in English and the languages of the case's two parties;
/// A4 print style. `format=pdf` renders it with headless Chromium
/// (`[reports] chromium`).
#[utoipa::path(
    get, path = "/v1/cases/{case_ref}/handover", operation_id = "getHandoverRecord",
    params(
        ("case_ref" = String, Path, description = "The case reference, e.g. TH-KH-2026-000042"),
        HandoverQuery,
    ),
    responses(
        (status = 200, description = "The record: an HTML page, or with format=pdf a PDF", content(
            (String = "text/html"),
            (Vec<u8> = "application/pdf"),
        )),
        (status = 400, description = "A format other than html or pdf (bad_format), or another query parameter (bad_query)", body = ErrorEnvelope),
        (status = 404, description = "No message of this case here (not_found), or no handover record in it (no_handover)", body = ErrorEnvelope),
        (status = 409, description = "The handover record's details were purged (handover_purged)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable), or with format=pdf no Chromium is installed (pdf_unavailable) or it did not render the PDF in time (pdf_failed); the HTML form still works", body = ErrorEnvelope),
    ),
)]
async fn handover_record(
    State(node): State<Arc<Node>>,
    Path(case_ref): Path<String>,
    query: Result<Query<HandoverQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let format = match q.format.as_deref() {
        None | Some("html") => PrintFormat::Html,
        Some("pdf") => PrintFormat::Pdf,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_format",
                "`format` must be one of html, pdf",
            ));
        }
    };
    let record = printed::handover_record(&node, &case_ref).await?;
    let parties: Vec<&str> = CaseRef::parse(&case_ref)
        .map(|r| vec![r.host(), r.origin()])
        .unwrap_or_default();
    let langs = languages_of(&parties);
    // A v2 record names its border gate; the agreement names it in each language.
    let gate: Option<Vec<(Lang, String)>> = record.gate.as_deref().and_then(|code| {
        let book = node.agreements();
        let gate = book
            .between(parties.first()?, parties.get(1)?)?
            .gate(code)?;
        Some(
            langs
                .iter()
                .map(|l| (*l, gate.name(l.code()).to_string()))
                .collect(),
        )
    });
    let page = handover::render(&record, &langs, gate.as_deref(), &node.country);
    if format == PrintFormat::Html {
        return Ok(html(page));
    }
    let pdf = pdf::render(&node.settings.reports, &page).await?;
    // The reference passed the envelope's pattern; keep the header plain anyway.
    let name: String = case_ref
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"handover-{name}.pdf\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        pdf,
    )
        .into_response())
}

/// The person's own timeline, printable.
///
/// A one-page plain-language sheet in the person's language of what has
/// happened in their case and what comes next, with the dates both
/// gateways hold and the answers still awaited (COMMIT guideline 31).
/// Only the referred person's own name.
#[utoipa::path(
    get, path = "/v1/cases/{case_ref}/timeline-for-person", operation_id = "getPersonTimeline",
    params(
        ("case_ref" = String, Path, description = "The case reference, e.g. TH-KH-2026-000042"),
        TimelineQuery,
    ),
    responses(
        (status = 200, description = "The sheet", content_type = "text/html", body = String),
        (status = 400, description = "A language other than en, km, th, vi, ms (bad_lang), or another query parameter (bad_query)", body = ErrorEnvelope),
        (status = 404, description = "No message of this case here (not_found)", body = ErrorEnvelope),
        (status = 503, description = "The store could not be reached (store_unavailable)", body = ErrorEnvelope),
    ),
)]
async fn person_timeline(
    State(node): State<Arc<Node>>,
    Path(case_ref): Path<String>,
    query: Result<Query<TimelineQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(params::bad_query)?;
    let lang = match q.lang.as_deref() {
        None => CaseRef::parse(&case_ref)
            .and_then(|r| Lang::of_country(r.origin()))
            .unwrap_or(Lang::En),
        Some(code) => Lang::parse(code).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_lang",
                format!("`lang` must be one of {}", Lang::allowed()),
            )
        })?,
    };
    let sheet = printed::person_timeline(&node, &case_ref).await?;
    Ok(html(timeline::render(&sheet, lang)))
}
