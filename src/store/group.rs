//! Group commit of submissions. Every submission is durable before its
//! caller hears `202`, and on SQLite each commit is an fsync; with many
//! callers at once, one transaction for all the submissions waiting (one
//! fsync) instead of one each is what lets acceptance keep up. Each caller
//! is answered only after the commit that holds its submission.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::audit::AuditEntry;
use super::engine::Writer;
use super::seal::Sealer;
use super::tx::WriteTx;
use super::{Backend, Enqueued, NewOutbound, StoreError, enqueue_group};

/// Most submissions in one transaction: enough to share an fsync widely,
/// few enough that one transaction stays short.
const MAX_GROUP: usize = 128;

type Reply = oneshot::Sender<Result<Enqueued, StoreError>>;

struct Submission {
    message: NewOutbound,
    audit: Option<AuditEntry>,
    reply: Reply,
}

/// The handle submitters use; the committer task ends when every handle
/// (every clone of the store) is gone.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    queue: mpsc::Sender<Submission>,
}

impl Committer {
    pub(super) fn spawn(pool: Writer, backend: Backend, sealer: Arc<Sealer>) -> Self {
        let (queue, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(rx, pool, backend, sealer));
        Self { queue }
    }

    /// Queues a submission and waits for the commit that holds it. `None`
    /// when the committer is gone (shutting down): nothing was stored.
    pub(super) async fn submit(
        &self,
        message: NewOutbound,
        audit: Option<AuditEntry>,
    ) -> Option<Result<Enqueued, StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Submission {
                message,
                audit,
                reply,
            })
            .await
            .ok()?;
        answer.await.ok()
    }
}

async fn run(
    mut rx: mpsc::Receiver<Submission>,
    pool: Writer,
    backend: Backend,
    sealer: Arc<Sealer>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        match commit_group(&pool, backend, &sealer, &group).await {
            Ok(results) => {
                for (s, r) in group.drain(..).zip(results) {
                    let _ = s.reply.send(Ok(r));
                }
            }
            // One submission's database error must not fail the others:
            // the group rolled back, so each goes again on its own.
            Err(e) if group.len() > 1 => {
                warn!(error = %e, submissions = group.len(), "group commit failed; committing one by one");
                for s in group.drain(..) {
                    let r = commit_group(&pool, backend, &sealer, std::slice::from_ref(&s))
                        .await
                        .map(|mut v| v.remove(0));
                    let _ = s.reply.send(r);
                }
            }
            Err(e) => {
                for s in group.drain(..) {
                    let _ = s.reply.send(Err(clone_error(&e)));
                }
            }
        }
    }
}

/// A transaction error for the one caller it concerns (database errors
/// are not `Clone`; the message is what reaches logs).
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Group(other.to_string()),
    }
}

async fn commit_group(
    pool: &Writer,
    backend: Backend,
    sealer: &Sealer,
    group: &[Submission],
) -> Result<Vec<Enqueued>, StoreError> {
    let items: Vec<_> = group
        .iter()
        .map(|s| (&s.message, s.audit.as_ref()))
        .collect();
    commit(pool, backend, sealer, &items).await
}

/// Commits `items` in one transaction, each judged in order as if alone
/// ([`enqueue_group`]): all of them or, on an error, none.
pub(super) async fn commit(
    pool: &Writer,
    backend: Backend,
    sealer: &Sealer,
    items: &[(&NewOutbound, Option<&AuditEntry>)],
) -> Result<Vec<Enqueued>, StoreError> {
    let mut tx = WriteTx::begin(pool, backend).await?;
    // Locks in one global order (audit chain, then cases sorted), the same
    // for every writer, so instances sharing PostgreSQL cannot deadlock.
    if items.iter().any(|(_, a)| a.is_some()) {
        tx.lock_audit().await?;
    }
    let cases: Vec<&str> = items.iter().map(|(m, _)| m.case_ref.as_str()).collect();
    tx.lock_cases(&cases).await?;
    enqueue_group(tx, backend, sealer, items).await
}
