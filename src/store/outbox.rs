//! The outbox: messages this node sends, submitted (judged against their
//! case and committed in groups) and read back for operators. The delivery
//! worker's claims and outcomes are in `claims`.

use super::*;

/// Delivery state of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    Queued,
    Delivering,
    Delivered,
    Rejected,
    Dead,
}

impl OutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Dead => "dead",
        }
    }

    /// A stored state; one this release does not know is an error, not
    /// silently `dead` (a file written by a newer release, or by hand).
    pub(super) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => Self::Queued,
            "delivering" => Self::Delivering,
            "delivered" => Self::Delivered,
            "rejected" => Self::Rejected,
            "dead" => Self::Dead,
            other => {
                return Err(StoreError::Row {
                    column: "state".to_string(),
                    message: format!("unknown outbox state `{other}`"),
                });
            }
        })
    }
}

/// What the submit path hands to the store.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub message_id: String,
    pub case_ref: String,
    pub peer: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub body: String,
    pub body_sha256: String,
    pub submit_sha256: String,
    pub submitted_at: i64,
    pub deadline_at: i64,
    /// What the lifecycle checks.
    pub case_message: CaseMessage,
    /// Keyed hashes of the search terms the message yields.
    pub search: Vec<String>,
    /// The de-identified facts it yields for the statistics.
    pub facts: Vec<crate::domain::facts::Fact>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub seq: i64,
    pub message_id: String,
    pub case_ref: String,
    pub peer: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub state: OutState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub receipt: Option<String>,
    pub submitted_at: i64,
    pub delivered_at: Option<i64>,
    pub deadline_at: i64,
    #[serde(skip)]
    pub submit_sha256: String,
    #[serde(skip)]
    pub body_sha256: String,
    /// This node's signature of the envelope, as delivered.
    pub signature: Option<String>,
    /// The receiver's signature of `receipt`.
    pub receipt_signature: Option<String>,
}

pub(super) const OUTBOX_COLUMNS: &str = "seq, message_id, case_ref, peer, type, in_reply_to, state, attempts, next_attempt_at, \
     last_error, receipt, submitted_at, delivered_at, deadline_at, submit_sha256, body_sha256, signature, receipt_signature";

impl OutboxRow {
    pub(super) fn from_row(r: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            seq: r.get("seq")?,
            message_id: r.get("message_id")?,
            case_ref: r.get("case_ref")?,
            peer: r.get("peer")?,
            message_type: r.get("type")?,
            in_reply_to: r.get("in_reply_to")?,
            state: OutState::parse(r.get("state")?)?,
            attempts: r.get("attempts")?,
            next_attempt_at: r.get("next_attempt_at")?,
            last_error: r.get("last_error")?,
            receipt: r.get("receipt")?,
            submitted_at: r.get("submitted_at")?,
            delivered_at: r.get("delivered_at")?,
            deadline_at: r.get("deadline_at")?,
            submit_sha256: r.get("submit_sha256")?,
            body_sha256: r.get("body_sha256")?,
            signature: r.get("signature")?,
            receipt_signature: r.get("receipt_signature")?,
        })
    }
}

#[derive(Debug)]
pub enum Enqueued {
    /// Newly committed.
    New(OutboxRow),
    /// The same message was submitted before; nothing changed.
    Replay(OutboxRow),
    /// A different message already uses this id.
    Conflict(OutboxRow),
    /// The message makes no sense in its case (state, reply target,
    /// correction); nothing stored.
    Refused(Refusal),
}

/// Outbox rows by message id.
pub(super) fn outbox_rows_by_id(rows: &[Row]) -> Result<HashMap<String, OutboxRow>, StoreError> {
    rows.iter()
        .map(|r| {
            let row = OutboxRow::from_row(r)?;
            Ok((row.message_id.clone(), row))
        })
        .collect()
}

/// Where the answer to one submission of a group comes from.
pub(super) enum Slot {
    Done(Box<Enqueued>),
    /// The `n`th new message of the group.
    New(usize),
    /// The same id as the `n`th new message, earlier in the group.
    Again {
        of: usize,
        same: bool,
    },
}

/// Submissions in one transaction, each judged as if committed alone and in
/// order: replay, conflict, lifecycle refusal, or a new outbox row with its
/// body, case-log entry and audit record. A handful of statements for the
/// whole group, not a handful per submission; on SQLite two round trips:
/// the `BEGIN` with every read (known ids, case histories, the audit
/// chain's tail), then every write with the `COMMIT`. The caller holds the
/// audit and case locks (PostgreSQL).
pub(super) async fn enqueue_group(
    mut tx: WriteTx,
    backend: Backend,
    sealer: &Sealer,
    group: &[(&NewOutbound, Option<&audit::AuditEntry>)],
) -> Result<Vec<Enqueued>, StoreError> {
    // Every read the writes depend on, in one round trip: the ids already
    // stored, the histories of the group's cases (a case whose messages are
    // all replays is read for nothing, which is rare and cheap), and the
    // audit chain's tail.
    let mut reads = Script::of(
        format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id IN ({})",
            in_of(backend, group.len())
        ),
        group.iter().map(|(m, _)| Arg::from(&m.message_id)),
    );
    let mut cases: Vec<&str> = group.iter().map(|(m, _)| m.case_ref.as_str()).collect();
    cases.sort_unstable();
    cases.dedup();
    let read_cases = push_case_histories(&mut reads, backend, &cases);
    let audited = group.iter().any(|(_, a)| a.is_some());
    if audited {
        reads.push(audit::TAIL_SQL.to_string(), []);
    }
    let mut sets = tx.run_sets(reads).await?.into_iter();
    let existing = outbox_rows_by_id(&sets.next().unwrap_or_default())?;
    let mut histories = if read_cases {
        let wanted: std::collections::HashSet<&str> = group
            .iter()
            .filter(|(m, _)| !existing.contains_key(&m.message_id))
            .map(|(m, _)| m.case_ref.as_str())
            .collect();
        histories_of(sealer, &sets.next().unwrap_or_default(), |c| {
            wanted.contains(c)
        })?
    } else {
        HashMap::new()
    };
    let tail = if audited {
        Some(audit::tail_of(&sets.next().unwrap_or_default())?)
    } else {
        None
    };

    let mut fresh: Vec<(&NewOutbound, Option<&audit::AuditEntry>)> = Vec::new();
    let mut fresh_ids: HashMap<&str, usize> = HashMap::new();
    let mut slots = Vec::with_capacity(group.len());
    for &(m, audit) in group {
        if let Some(row) = existing.get(&m.message_id) {
            slots.push(Slot::Done(Box::new(
                if row.submit_sha256 == m.submit_sha256 {
                    Enqueued::Replay(row.clone())
                } else {
                    Enqueued::Conflict(row.clone())
                },
            )));
        } else if let Some(&of) = fresh_ids.get(m.message_id.as_str()) {
            let same = fresh[of].0.submit_sha256 == m.submit_sha256;
            slots.push(Slot::Again { of, same });
        } else {
            let history = histories.entry(m.case_ref.clone()).or_default();
            match admission::admit_in_case(&m.case_ref, history, &m.case_message) {
                Err(e) => slots.push(Slot::Done(Box::new(Enqueued::Refused(e)))),
                Ok(_) => {
                    history.push(m.case_message.clone());
                    fresh_ids.insert(&m.message_id, fresh.len());
                    slots.push(Slot::New(fresh.len()));
                    fresh.push((m, audit));
                }
            }
        }
    }

    let audits: Vec<audit::AuditEntry> = fresh.iter().filter_map(|(_, a)| a.cloned()).collect();
    let mut writes = Script::new();
    if !fresh.is_empty() {
        let mut args = Vec::with_capacity(fresh.len() * 12);
        for (m, _) in &fresh {
            args.extend([
                Arg::from(&m.message_id),
                Arg::from(&m.case_ref),
                Arg::from(&m.peer),
                Arg::from(&m.message_type),
                Arg::from(&m.in_reply_to),
                Arg::from(&m.body_sha256),
                Arg::from(&m.submit_sha256),
                Arg::Str("queued"),
                Arg::Int(0),
                Arg::Int(m.submitted_at),
                Arg::Int(m.submitted_at),
                Arg::Int(m.deadline_at),
            ]);
        }
        writes.push(
            format!(
                "INSERT INTO outbox (message_id, case_ref, peer, type, in_reply_to, body_sha256, submit_sha256, \
                 state, attempts, next_attempt_at, submitted_at, deadline_at) VALUES {} RETURNING {OUTBOX_COLUMNS}",
                values_of(backend, fresh.len(), 12)
            ),
            args,
        );
        // Each body finds its row's `seq` by id, so it goes in the same
        // round trip as the insert instead of waiting for its `RETURNING`.
        writes.push(
            format!(
                "INSERT INTO outbox_body (seq, body) SELECT o.seq, v.column2 FROM (VALUES {}) AS v \
                 JOIN outbox o ON o.message_id = v.column1",
                values_of(backend, fresh.len(), 2)
            ),
            fresh.iter().flat_map(|(m, _)| {
                [
                    Arg::from(&m.message_id),
                    Arg::String(sealer.seal(&m.message_id, &m.body)),
                ]
            }),
        );
        push_case_log(
            &mut writes,
            backend,
            fresh
                .iter()
                .map(|(m, _)| (m.case_ref.as_str(), m.message_id.as_str())),
            "out",
        );
        super::search::push_search(
            &mut writes,
            backend,
            fresh
                .iter()
                .flat_map(|(m, _)| m.search.iter().map(|d| (m.case_ref.as_str(), d.as_str())))
                .collect(),
        );
        super::facts::push_facts(
            &mut writes,
            backend,
            fresh.iter().flat_map(|(m, _)| m.facts.iter()),
        );
        if let Some(tail) = tail {
            audit::push_append(&mut writes, backend, tail, &audits);
        }
    }
    let inserted = outbox_rows_by_id(&tx.commit(writes).await?)?;
    if inserted.len() != fresh.len() {
        return Err(StoreError::Missing("an outbox row just inserted"));
    }
    let row_of = |n: usize| -> Result<OutboxRow, StoreError> {
        inserted
            .get(&fresh[n].0.message_id)
            .cloned()
            .ok_or(StoreError::Missing("an outbox row just inserted"))
    };
    slots
        .into_iter()
        .map(|slot| {
            Ok(match slot {
                Slot::Done(e) => *e,
                Slot::New(n) => Enqueued::New(row_of(n)?),
                Slot::Again { of, same: true } => Enqueued::Replay(row_of(of)?),
                Slot::Again { of, same: false } => Enqueued::Conflict(row_of(of)?),
            })
        })
        .collect()
}

impl Store {
    /// Commits a message to the outbox if the case's lifecycle allows it.
    /// Idempotent by `message_id`: a resubmission of the same document is a
    /// replay, another document under the same id a conflict.
    pub async fn enqueue(&self, m: &NewOutbound) -> Result<Enqueued, StoreError> {
        self.enqueue_audited(m.clone(), None).await
    }

    /// [`Store::enqueue`], writing `audit` in the same transaction when the
    /// message is committed (one fsync for both).
    ///
    /// Submissions are group-committed: concurrent callers' submissions go
    /// through one committer, which runs as many as are waiting in one
    /// transaction (one fsync for all) and answers each caller only after
    /// that commit.
    pub async fn enqueue_audited(
        &self,
        m: NewOutbound,
        audit: Option<audit::AuditEntry>,
    ) -> Result<Enqueued, StoreError> {
        self.committer
            .submit(m, audit)
            .await
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Commits a batch of submissions in one transaction of its own (one
    /// fsync), each judged in order as if committed alone, so a message
    /// may follow an earlier one of its case in the same batch; the same id
    /// twice is a replay of the first (same document) or a conflict. The
    /// answers are in the order of `items`. An error means nothing of the
    /// batch was committed.
    ///
    /// A batch does not go through the group committer: it is a group
    /// already, and must commit or fail whole, where the committer retries
    /// a failed group's submissions one by one.
    pub async fn enqueue_batch(
        &self,
        items: &[(&NewOutbound, Option<&audit::AuditEntry>)],
    ) -> Result<Vec<Enqueued>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        group::commit(&self.write, self.backend, &self.sealer, items).await
    }

    pub async fn outbound(&self, message_id: &str) -> Result<Option<OutboxRow>, StoreError> {
        let row = query(format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = $1"
        ))
        .bind(message_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(OutboxRow::from_row).transpose()
    }

    /// The oldest message still waiting for delivery.
    pub async fn oldest_pending(&self) -> Result<Option<OutboxRow>, StoreError> {
        let row = query(format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state IN ('queued', 'delivering') ORDER BY seq LIMIT 1"
        ))
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(OutboxRow::from_row).transpose()
    }

    /// Outbound messages, newest first, optionally in one state.
    pub async fn outbox_list(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = query(format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1 IS NULL OR state = $2) ORDER BY seq DESC LIMIT $3"
        ))
        .bind(state)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(OutboxRow::from_row).collect()
    }

    /// Stops delivery of a message not yet delivered: it becomes `dead`
    /// with the operator's cancellation as its error. An attempt already in
    /// flight may still deliver it, and then it is recorded as delivered.
    pub async fn cancel(&self, message_id: &str, by: &str) -> Result<bool, StoreError> {
        let error =
            serde_json::json!({"kind": "cancelled", "message": format!("cancelled by {by}")})
                .to_string();
        let done = query(
            "UPDATE outbox SET state = 'dead', last_error = $1 WHERE message_id = $2 AND state IN ('queued', 'delivering')",
        )
        .bind(error)
        .bind(message_id)
        .execute(&self.write)
        .await?;
        Ok(done == 1)
    }

    /// Counts of outbound messages by state (for health and the demo).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = query("SELECT peer, state, COUNT(*) AS n FROM outbox GROUP BY peer, state ORDER BY peer, state")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("peer")?, r.get("state")?, r.get("n")?)))
            .collect()
    }
}
