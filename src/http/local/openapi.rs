//! The OpenAPI document `GET /openapi.json` serves: every local route from
//! its declaration (handler docs, roles, audit), the peer routes, and the
//! schema of every answer type.

use std::sync::OnceLock;

use axum::http::Method;

use super::views::*;
use crate::http::openapi::Document;
use crate::protocol::{BatchResponse, Receipt};

/// The OpenAPI 3.1 description of the local and peer APIs, as served.
pub fn openapi_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = Document::new();
        for (rule, op) in super::routes().operations() {
            doc.local(&rule.method, &rule.path, rule.roles, op.clone());
        }
        for (path, op) in crate::http::peer::operations() {
            doc.peer(&Method::POST, &path, op);
        }
        doc.schema::<Receipt>()
            .schema::<BatchResponse>()
            .schema::<MessageStatus>()
            .schema::<InboxPage>()
            .schema::<TimerPage>()
            .schema::<AuditPage>()
            .schema::<Accepted>()
            .schema::<MessageBatchResults>()
            .schema::<Requeued>()
            .schema::<ValidationReport>()
            .schema::<Health>()
            .schema::<SchemaList>();
        doc.schema::<super::batch::MessageBatch>();
        super::cases::schemas(&mut doc);
        super::search::schemas(&mut doc);
        super::evidence::schemas(&mut doc);
        super::timers::schemas(&mut doc);
        super::statistics::schemas(&mut doc);
        super::dashboard::schemas(&mut doc);
        crate::http::peer::schemas(&mut doc);
        doc.finish()
    })
}
