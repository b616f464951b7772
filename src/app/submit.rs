//! Submitting messages from this country's systems, one or a batch: fill
//! in what the gateway may supply, admit each, and commit it to the outbox
//! together with its audit record. Success means the message is on disk
//! and will be delivered.

use std::sync::Arc;

use std::collections::HashSet;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info};

use super::node::Node;
use crate::domain::access::{Principal, Role};
use crate::domain::admission::Refusal;
use crate::domain::consent::{self, Verdict};
use crate::domain::lifecycle::CaseMessage;
use crate::domain::officer::OfficerId;
use crate::store::audit::AuditEntry;
use crate::store::{Enqueued, NewOutbound, OutboxRow, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A committed submission.
#[derive(Debug)]
pub struct Submitted {
    pub row: OutboxRow,
    /// False when the same message was submitted before (a retry).
    pub fresh: bool,
    /// Whether the audit record was committed with the message (a fresh
    /// submission by a known caller); otherwise the caller writes it.
    pub audited: bool,
    /// Payload pointers the gateway took out because the person did not
    /// consent to sharing (the agreement's `minimal` rule).
    pub withheld: Vec<String>,
}

/// Fills what the submitter may leave to the gateway: `message_id` (a new
/// UUIDv7), `created_at` (now) and `from` (this node). Callers that retry
/// should set `message_id` themselves so a retry is recognised as one.
pub fn fill_defaults(node: &Node, doc: &mut Value) {
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

/// Admits `doc` and commits it to the outbox, with the audit record of
/// `principal`'s submission (on behalf of `officer`, if named) in the same
/// transaction.
pub async fn submit(
    node: &Node,
    principal: Option<&Principal>,
    officer: Option<&OfficerId>,
    doc: Value,
) -> Result<Submitted, SubmitError> {
    let case_withheld = withheld_cases(node, std::slice::from_ref(&doc)).await?;
    let Prepared {
        new,
        audit,
        withheld,
    } = prepare(
        node,
        principal,
        officer,
        doc,
        node.clock.now_ms(),
        &case_withheld,
    )?;
    let span =
        tracing::info_span!("submit", message_id = %new.message_id, case_ref = %new.case_ref);
    async move {
        let message_id = new.message_id.clone();
        let audited = audit.is_some();
        let enqueued = node.store.enqueue_audited(new, audit).await?;
        let submitted = settle(&message_id, enqueued, audited, withheld)?;
        if submitted.fresh {
            node.metrics.submitted.inc();
            node.wake.notify_one();
        }
        Ok(submitted)
    }
    .instrument(span)
    .await
}

/// Most messages in one batch submission: enough for a day's screening at
/// a border gate in a few requests, few enough that one transaction (and
/// the request's body, parsed whole) stays small.
pub const LOCAL_BATCH_MAX: usize = 500;

/// What became of one submission of a batch.
pub type Judged = Result<Submitted, Refusal>;

/// Admits each of `docs` on its own, exactly as [`submit`] does, and
/// commits the admitted ones in one transaction (one fsync), each with its
/// audit record; the answers are in the order of `docs`. Messages are
/// judged against their case in order, the batch's earlier ones included:
/// a case's `referral.notify` and its `referral.update` may come in one
/// batch. A store failure fails the whole batch: nothing of it was
/// committed.
pub async fn submit_batch(
    node: &Arc<Node>,
    principal: Option<Principal>,
    officer: Option<OfficerId>,
    docs: Vec<Value>,
) -> Result<Vec<Judged>, StoreError> {
    let now = node.clock.now_ms();
    let case_withheld = withheld_cases(node, &docs).await?;
    // Hundreds of schema validations are tens of milliseconds of CPU: on a
    // blocking thread, so the requests and deliveries sharing this async
    // worker do not wait for them.
    let prepared = tokio::task::spawn_blocking({
        let node = node.clone();
        move || {
            docs.into_iter()
                .map(|doc| {
                    prepare(
                        &node,
                        principal.as_ref(),
                        officer.as_ref(),
                        doc,
                        now,
                        &case_withheld,
                    )
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .map_err(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        // The runtime is shutting down: nothing was stored.
        Err(_) => StoreError::Closed,
    })?;
    let mut results: Vec<Option<Judged>> = Vec::with_capacity(prepared.len());
    let mut admitted = Vec::new();
    let mut slots = Vec::new();
    for item in prepared {
        match item {
            Ok(item) => {
                slots.push(results.len());
                admitted.push(item);
                results.push(None);
            }
            Err(refusal) => results.push(Some(Err(refusal))),
        }
    }
    let stored = {
        let items: Vec<_> = admitted
            .iter()
            .map(|p| (&p.new, p.audit.as_ref()))
            .collect();
        node.store.enqueue_batch(&items).await?
    };
    let mut fresh = 0;
    for ((slot, p), enqueued) in slots.into_iter().zip(admitted).zip(stored) {
        let span = tracing::info_span!("submit", message_id = %p.new.message_id, case_ref = %p.new.case_ref);
        let judged =
            span.in_scope(|| settle(&p.new.message_id, enqueued, p.audit.is_some(), p.withheld));
        fresh += u64::from(judged.as_ref().is_ok_and(|s| s.fresh));
        results[slot] = Some(judged);
    }
    if fresh > 0 {
        node.metrics.submitted.inc_by(fresh);
        // One wake for the batch: the worker claims whatever is due.
        node.wake.notify_one();
    }
    info!(messages = results.len(), queued = fresh, "batch submitted");
    Ok(results
        .into_iter()
        .map(|r| r.expect("every message has a result"))
        .collect())
}

/// The cases of `docs` whose consent to sharing stands withdrawn, read
/// before admission (a `referral.notify` starts its case, so it needs no
/// read). A withdrawal earlier in the same batch is not seen by the
/// batch's later messages; the receiver's reduction after it commits the
/// withdrawal covers what they carried.
async fn withheld_cases(node: &Node, docs: &[Value]) -> Result<HashSet<String>, StoreError> {
    let mut cases: Vec<&str> = docs
        .iter()
        .filter(|d| d["type"].as_str().is_some_and(|t| t != "referral.notify"))
        .filter_map(|d| d["case_ref"].as_str())
        .collect();
    cases.sort_unstable();
    cases.dedup();
    let mut withheld = HashSet::new();
    for case_ref in cases {
        if consent::case_withheld(&node.store.case_history(case_ref).await?) {
            withheld.insert(case_ref.to_string());
        }
    }
    Ok(withheld)
}

/// Fills the defaults of `doc`, admits it on its own terms (schema,
/// sender, parties, agreement, officer, peer), keeps out of it what the
/// person did not consent to share, and makes the outbox row and audit
/// record the store judges against the case.
fn prepare(
    node: &Node,
    principal: Option<&Principal>,
    officer: Option<&OfficerId>,
    mut doc: Value,
    now: i64,
    case_withheld: &HashSet<String>,
) -> Result<Prepared, Refusal> {
    if !doc.is_object() {
        return Err(Refusal::NotAnObject);
    }
    // Of the document as submitted: a retry of the same submission (whose
    // defaults the gateway filled differently) is still recognised.
    let submit_sha256 = hex::encode(Sha256::digest(
        serde_json::to_vec(&doc).expect("a JSON value serializes"),
    ));
    fill_defaults(node, &mut doc);
    // Who sent it is the gateway's to say: a consular mission's messages
    // are marked so, in both countries' timelines.
    if doc.get("sent_by").is_some() {
        return Err(Refusal::SentByReserved);
    }
    let mission = principal.filter(|p| p.role == Role::Embassy);
    if mission.is_some() {
        doc["sent_by"] = Value::String("mission".into());
    }
    // The stored text first: admission then takes the document, and its
    // payload moves into the envelope instead of being copied.
    let mut body = serde_json::to_string(&doc).expect("a JSON value serializes");
    let mut envelope = node
        .admission()
        .admit_outbound(doc, officer, |peer| node.settings.peer(peer).is_some())?;
    if let Some(p) = mission {
        if !p.may_see_case(&envelope.case_ref) {
            return Err(Refusal::CaseNotVisible);
        }
        node.admission().mission_may_send(&envelope, &envelope.to)?;
    }
    // Before anything is signed or stored: what the person did not consent
    // to share does not leave, even into this node's outbox.
    // A message silent on consent follows its case: after a withdrawal,
    // nothing more of the person crosses than the agreement allows.
    let case_withheld = case_withheld.contains(&envelope.case_ref);
    let (withheld, basis) = match node
        .admission()
        .consent_outbound(&envelope, case_withheld)?
    {
        Verdict::Minimal(patterns) => {
            let required = node.registry.required_pointers(&envelope.message_type);
            let mut payload = (*envelope.payload).clone();
            let withheld = consent::reduce(&mut payload, &patterns, &required);
            if !withheld.is_empty() {
                let mut stored: Value =
                    serde_json::from_str(&body).expect("the body was serialized from JSON");
                stored["payload"] = payload.clone();
                body = serde_json::to_string(&stored).expect("a JSON value serializes");
                envelope.payload = std::sync::Arc::new(payload);
            }
            (withheld, None)
        }
        Verdict::Basis(basis) => (Vec::new(), Some(basis)),
        Verdict::Shared | Verdict::Refused => (Vec::new(), None),
    };
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
        deadline_at: node.delivery_deadline(now),
        case_message: CaseMessage::from(&envelope),
        search: node.search_digests(&envelope.message_type, &envelope.payload),
        facts: crate::domain::facts::extract(&envelope),
    };
    let audit = principal.map(|p| AuditEntry {
        at: now,
        actor: p.name.clone(),
        role: p.role.as_str().to_string(),
        action: "message.submit".to_string(),
        case_ref: Some(new.case_ref.clone()),
        message_id: Some(new.message_id.clone()),
        // A message that crosses without consent says on what basis.
        result: basis
            .as_ref()
            .map_or_else(|| "ok".to_string(), |b| format!("ok (lawful basis: {b})")),
        officer: officer.map(|o| o.as_str().to_string()),
    });
    Ok(Prepared {
        new,
        audit,
        withheld,
    })
}

/// A submission admitted on its own terms, for the store to judge against
/// its case.
#[derive(Debug)]
struct Prepared {
    new: NewOutbound,
    audit: Option<AuditEntry>,
    /// What consent kept out of its payload ([`Submitted::withheld`]).
    withheld: Vec<String>,
}

/// The answer to one submission from what the store made of it; `audited`
/// says whether it carried its audit record (written only if it was new).
fn settle(
    message_id: &str,
    enqueued: Enqueued,
    audited: bool,
    withheld: Vec<String>,
) -> Result<Submitted, Refusal> {
    match enqueued {
        Enqueued::New(row) => {
            info!(peer = %row.peer, message_type = %row.message_type, "queued");
            Ok(Submitted {
                row,
                fresh: true,
                audited,
                withheld,
            })
        }
        Enqueued::Replay(row) => Ok(Submitted {
            row,
            fresh: false,
            audited: false,
            withheld,
        }),
        Enqueued::Refused(refusal) => Err(refusal),
        Enqueued::Conflict(_) => Err(Refusal::DuplicateMessageId {
            message_id: message_id.to_string(),
            inbound: false,
        }),
    }
}
