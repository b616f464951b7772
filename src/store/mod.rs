//! The durable store: outbox and inbox over SQLite (WAL, `synchronous=FULL`,
//! so a committed row is on disk). Migrations live in
//! `src/store/migrations/` and run at start.
//!
//! Writes go through a single connection: SQLite allows one writer at a time
//! anyway, and a dedicated writer avoids lock-upgrade failures between
//! connections. Reads use a small separate pool.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::lifecycle::{self, CaseMessage, CaseState, LifecycleError};

pub mod audit;
pub mod retention;
pub mod seal;
pub mod timers;

use std::sync::Arc;

use seal::{SealError, Sealer};

use timers::{NewEvent, NewTimer, Side};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bad database URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error(transparent)]
    Seal(#[from] SealError),
}

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

    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "delivering" => Self::Delivering,
            "delivered" => Self::Delivered,
            "rejected" => Self::Rejected,
            _ => Self::Dead,
        }
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
}

const OUTBOX_COLUMNS: &str = "seq, message_id, case_ref, peer, type, in_reply_to, state, attempts, next_attempt_at, \
     last_error, receipt, submitted_at, delivered_at, deadline_at, submit_sha256, body_sha256";

fn outbox_row(r: &sqlx::sqlite::SqliteRow) -> OutboxRow {
    OutboxRow {
        seq: r.get("seq"),
        message_id: r.get("message_id"),
        case_ref: r.get("case_ref"),
        peer: r.get("peer"),
        message_type: r.get("type"),
        in_reply_to: r.get("in_reply_to"),
        state: OutState::parse(r.get::<&str, _>("state")),
        attempts: r.get("attempts"),
        next_attempt_at: r.get("next_attempt_at"),
        last_error: r.get("last_error"),
        receipt: r.get("receipt"),
        submitted_at: r.get("submitted_at"),
        delivered_at: r.get("delivered_at"),
        deadline_at: r.get("deadline_at"),
        submit_sha256: r.get("submit_sha256"),
        body_sha256: r.get("body_sha256"),
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
    /// The message makes no sense in the case's state; nothing stored.
    Refused(LifecycleError),
}

/// A message claimed for one delivery attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub seq: i64,
    pub message_id: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub case_ref: String,
    pub peer: String,
    pub submitted_at: i64,
    pub body: String,
    pub body_sha256: String,
    pub attempts: i64,
    pub deadline_at: i64,
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        receipt: String,
        at: i64,
        /// The receiver's commit time, from its receipt.
        received_at: i64,
        /// The "awaiting answer" timer this delivery opens.
        timer: Option<NewTimer>,
    },
    Rejected {
        reason: String,
    },
    Retry {
        error: String,
        next_attempt_at: i64,
    },
    Dead {
        error: String,
        at: i64,
    },
}

#[derive(Debug, Clone)]
pub struct NewInbound {
    pub message_id: String,
    pub case_ref: String,
    pub sender: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub body: String,
    pub body_sha256: String,
    pub received_at: i64,
    /// The receipt to keep if this is the first time the message arrives.
    pub receipt: String,
    /// What the lifecycle checks.
    pub case_message: CaseMessage,
    /// The "answer due" timer this message opens.
    pub timer: Option<NewTimer>,
}

#[derive(Debug, Clone)]
pub enum Received {
    /// Committed now, or earlier with identical content: the stored receipt.
    Stored { receipt: String, fresh: bool },
    /// A different message already arrived under this id.
    Conflict,
    /// The message makes no sense in the case's state; nothing stored.
    Refused(LifecycleError),
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxRow {
    pub seq: i64,
    pub message_id: String,
    pub case_ref: String,
    pub sender: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub body: String,
    pub received_at: i64,
    pub receipt: String,
}

fn inbox_row(r: &sqlx::sqlite::SqliteRow) -> InboxRow {
    InboxRow {
        seq: r.get("seq"),
        message_id: r.get("message_id"),
        case_ref: r.get("case_ref"),
        sender: r.get("sender"),
        message_type: r.get("type"),
        in_reply_to: r.get("in_reply_to"),
        body: r.get("body"),
        received_at: r.get("received_at"),
        receipt: r.get("receipt"),
    }
}

/// Creates the directory of a SQLite file so a fresh checkout can start.
fn create_parent_dir(url: &str) {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

/// The messages of a case that count, in the order this node committed
/// them: everything received, and everything sent that the peer has not
/// refused (`rejected`) or that did not die undelivered (`dead`).
async fn case_history(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    case_ref: &str,
) -> Result<Vec<CaseMessage>, StoreError> {
    let rows = sqlx::query(
        "SELECT l.message_id, COALESCE(o.body, i.body) AS body FROM case_log l \
         LEFT JOIN outbox o ON l.direction = 'out' AND o.message_id = l.message_id \
         LEFT JOIN inbox i ON l.direction = 'in' AND i.message_id = l.message_id \
         WHERE l.case_ref = ? AND (o.state IS NULL OR o.state NOT IN ('rejected', 'dead')) \
         ORDER BY l.seq",
    )
    .bind(case_ref)
    .fetch_all(&mut *conn)
    .await?;
    let mut history = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(sealed) = r.get::<Option<String>, _>("body") else {
            continue;
        };
        let body = sealer.open(r.get::<&str, _>("message_id"), &sealed)?;
        if let Some(m) = case_message_of(&body) {
            history.push(m);
        }
    }
    Ok(history)
}

/// The lifecycle's view of a stored envelope.
pub fn case_message_of(body: &str) -> Option<CaseMessage> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(CaseMessage {
        message_id: v["message_id"].as_str()?.to_string(),
        message_type: v["type"].as_str()?.to_string(),
        from: v["from"].as_str()?.to_string(),
        in_reply_to: v["in_reply_to"].as_str().map(String::from),
        payload: v["payload"].clone(),
    })
}

fn check_lifecycle(
    case_ref: &str,
    history: &[CaseMessage],
    message: &CaseMessage,
) -> Result<CaseState, LifecycleError> {
    let state = lifecycle::replay(case_ref, history);
    lifecycle::next_state(case_ref, state, message, history)
}

async fn log_case(
    conn: &mut sqlx::SqliteConnection,
    case_ref: &str,
    message_id: &str,
    direction: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO case_log (case_ref, message_id, direction) VALUES (?, ?, ?)")
        .bind(case_ref)
        .bind(message_id)
        .bind(direction)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    write: SqlitePool,
    read: SqlitePool,
    sealer: Arc<Sealer>,
}

impl Store {
    /// Opens (creating if needed) the database and runs migrations.
    pub async fn open(url: &str, sealer: Sealer) -> Result<Self, StoreError> {
        create_parent_dir(url);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url {
                url: url.to_string(),
                message: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&write)
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self {
            write,
            read,
            sealer: Arc::new(sealer),
        })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Commits a message to the outbox if the case's lifecycle allows it.
    /// Idempotent by `message_id`: a resubmission of the same document is a
    /// replay, another document under the same id a conflict.
    pub async fn enqueue(&self, m: &NewOutbound) -> Result<Enqueued, StoreError> {
        self.enqueue_audited(m, None).await
    }

    /// [`Store::enqueue`], writing `audit` in the same transaction when the
    /// message is committed (one fsync for both).
    pub async fn enqueue_audited(
        &self,
        m: &NewOutbound,
        audit: Option<&audit::AuditEntry>,
    ) -> Result<Enqueued, StoreError> {
        let mut tx = self.write.begin().await?;
        let existing = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = ?"
        ))
        .bind(&m.message_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let row = outbox_row(&row);
            return Ok(if row.submit_sha256 == m.submit_sha256 {
                Enqueued::Replay(row)
            } else {
                Enqueued::Conflict(row)
            });
        }
        let history = case_history(&mut tx, &self.sealer, &m.case_ref).await?;
        if let Err(e) = check_lifecycle(&m.case_ref, &history, &m.case_message) {
            return Ok(Enqueued::Refused(e));
        }
        let sealed_body = self.sealer.seal(&m.message_id, &m.body);
        sqlx::query(
            "INSERT INTO outbox (message_id, case_ref, peer, type, in_reply_to, body, body_sha256, submit_sha256, \
             state, attempts, next_attempt_at, submitted_at, deadline_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
        )
        .bind(&m.message_id)
        .bind(&m.case_ref)
        .bind(&m.peer)
        .bind(&m.message_type)
        .bind(&m.in_reply_to)
        .bind(&sealed_body)
        .bind(&m.body_sha256)
        .bind(&m.submit_sha256)
        .bind(m.submitted_at)
        .bind(m.submitted_at)
        .bind(m.deadline_at)
        .execute(&mut *tx)
        .await?;
        log_case(&mut tx, &m.case_ref, &m.message_id, "out").await?;
        if let Some(entry) = audit {
            audit::append(&mut tx, std::slice::from_ref(entry)).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = ?"
        ))
        .bind(&m.message_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Enqueued::New(outbox_row(&row)))
    }

    pub async fn outbound(&self, message_id: &str) -> Result<Option<OutboxRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = ?"
        ))
        .bind(message_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(outbox_row))
    }

    /// Claims up to `limit` messages due at `now` that head their (peer,
    /// case) queue, marks them `delivering` and counts the attempt. A later
    /// message of a case waits until every earlier one is final, which keeps
    /// per-case order.
    pub async fn claim_due(&self, now: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query(
            "SELECT o.seq, o.message_id, o.type, o.in_reply_to, o.submitted_at, o.case_ref, o.peer, o.body, o.body_sha256, o.attempts, o.deadline_at \
             FROM outbox o INDEXED BY outbox_pending \
             WHERE o.state IN ('queued', 'delivering') AND o.next_attempt_at <= ? \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.peer = o.peer AND p.case_ref = o.case_ref \
                               AND p.seq < o.seq AND p.state IN ('queued', 'delivering')) \
             ORDER BY o.seq LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                seq: r.get("seq"),
                message_id: r.get("message_id"),
                message_type: r.get("type"),
                in_reply_to: r.get("in_reply_to"),
                submitted_at: r.get("submitted_at"),
                case_ref: r.get("case_ref"),
                peer: r.get("peer"),
                body: r.get("body"),
                body_sha256: r.get("body_sha256"),
                attempts: r.get::<i64, _>("attempts") + 1,
                deadline_at: r.get("deadline_at"),
            })
            .collect();
        for c in &mut claimed {
            c.body = self.sealer.open(&c.message_id, &c.body)?;
        }
        if !claimed.is_empty() {
            // One statement for the whole claim: each statement is a round
            // trip to SQLite's thread.
            let marks = vec!["?"; claimed.len()].join(", ");
            let sql = format!(
                "UPDATE outbox SET state = 'delivering', attempts = attempts + 1 WHERE seq IN ({marks})"
            );
            let mut q = sqlx::query(&sql);
            for c in &claimed {
                q = q.bind(c.seq);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The earliest time a head-of-queue message becomes due, if any.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(o.next_attempt_at) AS due FROM outbox o INDEXED BY outbox_pending \
             WHERE o.state IN ('queued', 'delivering') \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.peer = o.peer AND p.case_ref = o.case_ref \
                               AND p.seq < o.seq AND p.state IN ('queued', 'delivering'))",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(row.get("due"))
    }

    /// Records the outcome of attempts, in one transaction: a delivery
    /// opens the sender's timer and closes the timer it answers; a dead
    /// message raises an alert.
    pub async fn record(&self, results: &[(i64, Outcome)]) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for (seq, outcome) in results {
            match outcome {
                Outcome::Delivered {
                    receipt,
                    at,
                    received_at,
                    timer,
                } => {
                    let row = sqlx::query(
                        "UPDATE outbox SET state = 'delivered', receipt = ?, delivered_at = ?, last_error = NULL \
                         WHERE seq = ? RETURNING message_id, type, in_reply_to",
                    )
                    .bind(receipt)
                    .bind(at)
                    .bind(seq)
                    .fetch_one(&mut *tx)
                    .await?;
                    if let Some(t) = timer {
                        timers::insert_timer(&mut tx, t).await?;
                    }
                    if let Some(reply_to) = row.get::<Option<String>, _>("in_reply_to") {
                        let (id, t): (String, String) = (row.get("message_id"), row.get("type"));
                        timers::close_timers(
                            &mut tx,
                            Side::AnswerDue,
                            &reply_to,
                            &t,
                            &id,
                            *received_at,
                        )
                        .await?;
                    }
                }
                Outcome::Rejected { reason } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'rejected', last_error = ? WHERE seq = ?",
                    )
                    .bind(reason)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Outcome::Retry {
                    error,
                    next_attempt_at,
                } => {
                    sqlx::query(
                        "UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE seq = ?",
                    )
                    .bind(error)
                    .bind(next_attempt_at)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Outcome::Dead { error, at } => {
                    sqlx::query("UPDATE outbox SET state = 'dead', last_error = ? WHERE seq = ?")
                        .bind(error)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    let row = sqlx::query("SELECT message_id, case_ref, type, peer, attempts FROM outbox WHERE seq = ?")
                        .bind(seq)
                        .fetch_one(&mut *tx)
                        .await?;
                    timers::insert_event(
                        &mut tx,
                        &NewEvent {
                            case_ref: row.get("case_ref"),
                            message_id: Some(row.get("message_id")),
                            kind: "dead",
                            at: *at,
                            detail: serde_json::json!({
                                "type": row.get::<String, _>("type"),
                                "peer": row.get::<String, _>("peer"),
                                "attempts": row.get::<i64, _>("attempts"),
                            }),
                            alert: true,
                        },
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a message from a peer if the case's lifecycle allows it,
    /// idempotently by `message_id`: a resend gets the stored receipt.
    pub async fn receive(&self, m: &NewInbound) -> Result<Received, StoreError> {
        let mut tx = self.write.begin().await?;
        let received = self.receive_in(&mut tx, m).await?;
        tx.commit().await?;
        Ok(received)
    }

    /// Stores several messages from a peer in one transaction (one fsync),
    /// each checked as [`Store::receive`] would, in order.
    pub async fn receive_many(&self, messages: &[NewInbound]) -> Result<Vec<Received>, StoreError> {
        let mut tx = self.write.begin().await?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(self.receive_in(&mut tx, m).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn receive_in(
        &self,
        tx: &mut sqlx::SqliteConnection,
        m: &NewInbound,
    ) -> Result<Received, StoreError> {
        let existing = sqlx::query("SELECT body_sha256, receipt FROM inbox WHERE message_id = ?")
            .bind(&m.message_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            if row.get::<&str, _>("body_sha256") != m.body_sha256 {
                return Ok(Received::Conflict);
            }
            return Ok(Received::Stored {
                receipt: row.get("receipt"),
                fresh: false,
            });
        }
        let history = case_history(&mut *tx, &self.sealer, &m.case_ref).await?;
        if let Err(e) = check_lifecycle(&m.case_ref, &history, &m.case_message) {
            return Ok(Received::Refused(e));
        }
        let sealed_body = self.sealer.seal(&m.message_id, &m.body);
        sqlx::query(
            "INSERT INTO inbox (message_id, case_ref, sender, type, in_reply_to, body, body_sha256, received_at, receipt) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.message_id)
        .bind(&m.case_ref)
        .bind(&m.sender)
        .bind(&m.message_type)
        .bind(&m.in_reply_to)
        .bind(&sealed_body)
        .bind(&m.body_sha256)
        .bind(m.received_at)
        .bind(&m.receipt)
        .execute(&mut *tx)
        .await?;
        log_case(&mut *tx, &m.case_ref, &m.message_id, "in").await?;
        if let Some(t) = &m.timer {
            timers::insert_timer(&mut *tx, t).await?;
        }
        if let Some(reply_to) = &m.in_reply_to {
            timers::close_timers(
                &mut *tx,
                Side::AwaitingAnswer,
                reply_to,
                &m.message_type,
                &m.message_id,
                m.received_at,
            )
            .await?;
        }
        Ok(Received::Stored {
            receipt: m.receipt.clone(),
            fresh: true,
        })
    }

    /// The case's state on this node, if the case exists.
    pub async fn case_state(&self, case_ref: &str) -> Result<Option<CaseState>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let history = case_history(&mut conn, &self.sealer, case_ref).await?;
        Ok(lifecycle::replay(case_ref, &history))
    }

    /// Received messages after `cursor`, oldest first.
    pub async fn inbox_after(&self, cursor: i64, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(cursor)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| self.open_inbox(inbox_row(r))).collect()
    }

    fn open_inbox(&self, mut row: InboxRow) -> Result<InboxRow, StoreError> {
        row.body = self.sealer.open(&row.message_id, &row.body)?;
        Ok(row)
    }

    pub async fn inbound(&self, message_id: &str) -> Result<Option<InboxRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM inbox WHERE message_id = ?")
            .bind(message_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref()
            .map(|r| self.open_inbox(inbox_row(r)))
            .transpose()
    }

    /// Everything this node sent and received for a case.
    pub async fn case_messages(
        &self,
        case_ref: &str,
    ) -> Result<(Vec<OutboxRow>, Vec<InboxRow>), StoreError> {
        let out = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE case_ref = ? ORDER BY seq"
        ))
        .bind(case_ref)
        .fetch_all(&self.read)
        .await?;
        let inb = sqlx::query("SELECT * FROM inbox WHERE case_ref = ? ORDER BY seq")
            .bind(case_ref)
            .fetch_all(&self.read)
            .await?;
        Ok((
            out.iter().map(outbox_row).collect(),
            inb.iter().map(inbox_row).collect(),
        ))
    }

    /// The oldest message still waiting for delivery.
    pub async fn oldest_pending(&self) -> Result<Option<OutboxRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state IN ('queued', 'delivering') ORDER BY seq LIMIT 1"
        ))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(outbox_row))
    }

    /// Outbound messages, newest first, optionally in one state.
    pub async fn outbox_list(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (? IS NULL OR state = ?) ORDER BY seq DESC LIMIT ?"
        ))
        .bind(state)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(outbox_row).collect())
    }

    /// Stops delivery of a message not yet delivered: it becomes `dead`
    /// with the operator's cancellation as its error. An attempt already in
    /// flight may still deliver it, and then it is recorded as delivered.
    pub async fn cancel(&self, message_id: &str, by: &str) -> Result<bool, StoreError> {
        let error =
            serde_json::json!({"kind": "cancelled", "message": format!("cancelled by {by}")})
                .to_string();
        let done = sqlx::query(
            "UPDATE outbox SET state = 'dead', last_error = ? WHERE message_id = ? AND state IN ('queued', 'delivering')",
        )
        .bind(error)
        .bind(message_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Counts of outbound messages by state (for health and the demo).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT peer, state, COUNT(*) AS n FROM outbox GROUP BY peer, state ORDER BY peer, state")
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("peer"), r.get("state"), r.get("n")))
            .collect())
    }
}
