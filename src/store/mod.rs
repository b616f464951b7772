//! The durable store: outbox, inbox, case log, timers and audit, over
//! SQLite (the embedded default: WAL, `synchronous=FULL`, so a committed row
//! is on disk) or PostgreSQL (several instances of one gateway share it),
//! chosen by the database URL's scheme. Migrations for both live in
//! `src/store/migrations/{sqlite,postgres}` and run at start.
//!
//! The SQL is written once, in the dialect both accept (`$n` parameters,
//! `ON CONFLICT`, `RETURNING`, `IS NOT DISTINCT FROM`); the few places that
//! differ branch on [`Backend`]: SQLite's `INDEXED BY`, PostgreSQL's row
//! locks (`FOR UPDATE SKIP LOCKED`) and advisory locks, which stand in for
//! SQLite's single writer when several instances write at once.
//!
//! On SQLite, writes go through a single connection: SQLite allows one
//! writer at a time anyway, and a dedicated writer avoids lock-upgrade
//! failures between connections. Reads use a small separate pool.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor, Row};

use crate::domain::admission::{self, Refusal};
use crate::domain::lifecycle::{self, CaseMessage, CaseState};

pub mod audit;
mod group;
pub mod retention;
pub mod seal;
pub mod timers;
mod tx;
mod writer;

use std::sync::Arc;

use seal::{SealError, Sealer};

use timers::{NewEvent, NewTimer, Side};
use tx::{Arg, Script, WriteTx};
use writer::Writer;

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
    #[error("the store is shutting down")]
    Closed,
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Namespaces of PostgreSQL advisory locks (first key of the pair).
const LOCK_CASE: i32 = 0x4877_0001;
const LOCK_AUDIT: i32 = 0x4877_0002;

/// Serialises writers of one case across instances (PostgreSQL; SQLite's
/// single writer already does). Held until the transaction ends, it makes
/// the lifecycle check and the insert one step, and per-case `seq` order
/// equal to commit order.
async fn lock_case(
    conn: &mut AnyConnection,
    backend: Backend,
    case_ref: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_CASE)
            .bind(case_ref)
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Serialises appends to the audit chain across instances (PostgreSQL).
async fn lock_audit(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock($1, 0)")
            .bind(LOCK_AUDIT)
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(())
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

fn outbox_row(r: &sqlx::any::AnyRow) -> OutboxRow {
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
    /// The message makes no sense in its case (state, reply target,
    /// correction); nothing stored.
    Refused(Refusal),
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
    /// The message makes no sense in its case (state, reply target,
    /// correction); nothing stored.
    Refused(Refusal),
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

fn inbox_row(r: &sqlx::any::AnyRow) -> InboxRow {
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
    let path = sqlite_path(url);
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

fn sqlite_path(url: &str) -> &str {
    url.trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or("")
}

/// The URL without its password, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A SQLite URL that creates the file if missing (`mode=rwc`) unless the
/// URL sets a mode itself.
fn sqlite_url_creating(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The backend a connection talks to.
fn backend_of(conn: &AnyConnection) -> Backend {
    if conn.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// Placeholders for `n` parameters, numbered from 1, for the statements
/// that bind many (multi-row inserts, `IN` lists). SQLite gets anonymous
/// `?`: sqlx looks up the name of every numbered parameter, and SQLite finds
/// a name by walking the list of names, so `$n` costs O(n²) per statement
/// (it was the writer thread's top symbol at 1,700 parameters).
fn placeholders(backend: Backend, n: usize) -> impl Iterator<Item = String> {
    (1..=n).map(move |i| match backend {
        Backend::Sqlite => "?".to_string(),
        Backend::Postgres => format!("${i}"),
    })
}

/// Placeholders for a multi-row `VALUES` list: `($1, .., $cols), (..)`.
/// One statement for many rows is one round trip (to SQLite's thread or to
/// the PostgreSQL server) instead of one per row, which is most of the cost
/// of a small write.
fn values_of(backend: Backend, rows: usize, cols: usize) -> String {
    let all: Vec<String> = placeholders(backend, rows * cols).collect();
    all.chunks(cols.max(1))
        .map(|row| format!("({})", row.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Placeholders `$1, .., $n` (SQLite: `?`) for an `IN (..)` list, the
/// statement's only parameters.
fn in_of(backend: Backend, n: usize) -> String {
    placeholders(backend, n).collect::<Vec<_>>().join(", ")
}

/// The messages of a case that count, in the order this node committed
/// them: everything received, and everything sent that the peer has not
/// refused (`rejected`) or that did not die undelivered (`dead`).
async fn case_history(
    conn: &mut sqlx::AnyConnection,
    sealer: &Sealer,
    case_ref: &str,
) -> Result<Vec<CaseMessage>, StoreError> {
    Ok(case_histories(conn, sealer, &[case_ref])
        .await?
        .remove(case_ref)
        .unwrap_or_default())
}

/// [`case_history`] of several cases in one query.
async fn case_histories(
    conn: &mut sqlx::AnyConnection,
    sealer: &Sealer,
    cases: &[&str],
) -> Result<HashMap<String, Vec<CaseMessage>>, StoreError> {
    if cases.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = case_histories_sql(backend_of(conn), cases.len());
    let mut query = sqlx::query(&sql);
    for case_ref in cases {
        query = query.bind(*case_ref);
    }
    histories_of(sealer, &query.fetch_all(&mut *conn).await?, |_| true)
}

/// The read of [`case_histories`], for `n` cases bound in order.
fn case_histories_sql(backend: Backend, n: usize) -> String {
    format!(
        "SELECT l.case_ref, l.message_id, COALESCE(ob.body, i.body) AS body FROM case_log l \
         LEFT JOIN outbox o ON l.direction = 'out' AND o.message_id = l.message_id \
         LEFT JOIN outbox_body ob ON ob.seq = o.seq \
         LEFT JOIN inbox i ON l.direction = 'in' AND i.message_id = l.message_id \
         WHERE l.case_ref IN ({}) AND (o.state IS NULL OR o.state NOT IN ('rejected', 'dead')) \
         ORDER BY l.seq",
        in_of(backend, n)
    )
}

/// [`case_histories`] as a statement of a [`Script`] (none for no cases).
fn push_case_histories<'a>(script: &mut Script<'a>, backend: Backend, cases: &[&'a str]) -> bool {
    if cases.is_empty() {
        return false;
    }
    script.push(
        case_histories_sql(backend, cases.len()),
        cases.iter().map(|c| Arg::Str(c)),
    );
    true
}

/// Case histories from the rows of [`case_histories_sql`], of the cases
/// `wanted` only: the others' bodies are not opened (a batch of resends
/// needs no history, and must not fail on a body it does not need).
fn histories_of(
    sealer: &Sealer,
    rows: &[AnyRow],
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Vec<CaseMessage>>, StoreError> {
    let mut histories: HashMap<String, Vec<CaseMessage>> = HashMap::new();
    for r in rows {
        if !wanted(r.get::<&str, _>("case_ref")) {
            continue;
        }
        let Some(sealed) = r.get::<Option<String>, _>("body") else {
            continue;
        };
        let body = sealer.open(r.get::<&str, _>("message_id"), &sealed)?;
        if let Some(m) = CaseMessage::from_stored(&body) {
            histories.entry(r.get("case_ref")).or_default().push(m);
        }
    }
    Ok(histories)
}

/// Case-log entries, in commit order (a multi-row insert assigns `seq` in
/// the order of its rows).
fn push_case_log<'a>(
    script: &mut Script<'a>,
    backend: Backend,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    direction: &'static str,
) {
    let n = entries.len();
    if n == 0 {
        return;
    }
    script.push(
        format!(
            "INSERT INTO case_log (case_ref, message_id, direction) VALUES {}",
            values_of(backend, n, 3)
        ),
        entries.flat_map(|(case_ref, message_id)| {
            [
                Arg::Str(case_ref),
                Arg::Str(message_id),
                Arg::Str(direction),
            ]
        }),
    );
}

/// Outbox rows by message id.
fn outbox_rows_by_id(rows: &[sqlx::any::AnyRow]) -> HashMap<String, OutboxRow> {
    rows.iter()
        .map(|r| {
            let row = outbox_row(r);
            (row.message_id.clone(), row)
        })
        .collect()
}

/// Where the answer to one submission of a group comes from.
enum Slot {
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
async fn enqueue_group(
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
    let existing = outbox_rows_by_id(&sets.next().unwrap_or_default());
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
    let tail = audited.then(|| audit::tail_of(&sets.next().unwrap_or_default()));

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
        if let Some(tail) = tail {
            audit::push_append(&mut writes, backend, tail, &audits);
        }
    }
    let inserted = outbox_rows_by_id(&tx.commit(writes).await?);
    if inserted.len() != fresh.len() {
        return Err(StoreError::Db(sqlx::Error::RowNotFound));
    }
    let row_of = |n: usize| -> Result<OutboxRow, StoreError> {
        inserted
            .get(&fresh[n].0.message_id)
            .cloned()
            .ok_or_else(|| StoreError::Db(sqlx::Error::RowNotFound))
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

/// The writes of [`Store::record`], inside the caller's transaction: the
/// bulk (deliveries, the timers they open, retries) in one round trip.
async fn record_in(
    tx: &mut WriteTx,
    backend: Backend,
    results: &[(i64, Outcome)],
) -> Result<(), StoreError> {
    let mut bulk = Script::new();
    let delivered: Vec<(i64, &str, i64)> = results
        .iter()
        .filter_map(|(seq, o)| match o {
            Outcome::Delivered { receipt, at, .. } => Some((*seq, receipt.as_str(), *at)),
            _ => None,
        })
        .collect();
    if !delivered.is_empty() {
        // A row already delivered is left alone: another instance's
        // attempt, after this one's lease ran out, recorded it first.
        bulk.push(
            format!(
                "UPDATE outbox SET state = 'delivered', receipt = v.column2, delivered_at = v.column3, last_error = NULL \
                 FROM (VALUES {}) AS v WHERE outbox.seq = v.column1 AND outbox.state <> 'delivered' \
                 RETURNING seq, message_id, type, in_reply_to",
                values_of(backend, delivered.len(), 3)
            ),
            delivered
                .iter()
                .flat_map(|&(seq, receipt, at)| [Arg::Int(seq), Arg::Str(receipt), Arg::Int(at)]),
        );
        // The timers the deliveries open. Such a row delivered before
        // opened its timer then, and this insert leaves that one as it is.
        let opened: Vec<&NewTimer> = results
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Delivered { timer, .. } => timer.as_ref(),
                _ => None,
            })
            .collect();
        timers::push_timers(&mut bulk, backend, &opened);
    }
    // Retries, in one statement too: with a peer down, every message
    // of every batch comes back as one.
    let retries: Vec<(i64, &str, i64)> = results
        .iter()
        .filter_map(|(seq, o)| match o {
            Outcome::Retry {
                error,
                next_attempt_at,
            } => Some((*seq, error.as_str(), *next_attempt_at)),
            _ => None,
        })
        .collect();
    if !retries.is_empty() {
        bulk.push(
            format!(
                "UPDATE outbox SET last_error = v.column2, next_attempt_at = v.column3 \
                 FROM (VALUES {}) AS v WHERE outbox.seq = v.column1 AND outbox.state IN ('queued', 'delivering')",
                values_of(backend, retries.len(), 3)
            ),
            retries.iter().flat_map(|&(seq, error, next_attempt_at)| {
                [Arg::Int(seq), Arg::Str(error), Arg::Int(next_attempt_at)]
            }),
        );
    }
    // Rows of the deliveries this record made: an answer closes the timers
    // of the message it answers.
    let updated = if bulk.is_empty() {
        Vec::new()
    } else {
        tx.run(bulk).await?
    };
    for row in &updated {
        let Some(reply_to) = row.get::<Option<String>, _>("in_reply_to") else {
            continue;
        };
        let seq: i64 = row.get("seq");
        let Some(received_at) = results.iter().find_map(|(s, o)| match o {
            Outcome::Delivered { received_at, .. } if *s == seq => Some(*received_at),
            _ => None,
        }) else {
            continue;
        };
        let (id, t): (String, String) = (row.get("message_id"), row.get("type"));
        timers::close_timers(
            tx.conn().await?,
            Side::AnswerDue,
            &reply_to,
            &t,
            &id,
            received_at,
        )
        .await?;
    }
    for (seq, outcome) in results {
        match outcome {
            Outcome::Delivered { .. } | Outcome::Retry { .. } => {}
            Outcome::Rejected { reason } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'rejected', last_error = $1 \
                     WHERE seq = $2 AND state IN ('queued', 'delivering')",
                )
                .bind(reason)
                .bind(seq)
                .execute(tx.conn().await?)
                .await?;
            }
            Outcome::Dead { error, at } => {
                let conn = tx.conn().await?;
                let Some(row) = sqlx::query(
                    "UPDATE outbox SET state = 'dead', last_error = $1 \
                     WHERE seq = $2 AND state IN ('queued', 'delivering') \
                     RETURNING message_id, case_ref, type, peer, attempts",
                )
                .bind(error)
                .bind(seq)
                .fetch_optional(&mut *conn)
                .await?
                else {
                    continue;
                };
                timers::insert_event(
                    conn,
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
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    write: Writer,
    read: AnyPool,
    backend: Backend,
    /// How long a PostgreSQL claim keeps other instances off a message.
    lease_ms: i64,
    sealer: Arc<Sealer>,
    committer: group::Committer,
}

/// Settings of every SQLite connection (per connection; WAL is also
/// recorded in the file).
pub(super) async fn sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in [
        "PRAGMA busy_timeout = 10000",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "PRAGMA foreign_keys = ON",
        // Statement journals of multi-row writes in memory, not in
        // temporary files.
        "PRAGMA temp_store = MEMORY",
    ] {
        conn.execute(pragma).await?;
    }
    Ok(())
}

/// Default claim lease: well past one delivery attempt's timeout.
const DEFAULT_LEASE_MS: i64 = 30_000;

impl Store {
    /// Opens (creating if needed) the database named by `url` (`sqlite:` or
    /// `postgres://`) and runs its migrations.
    pub async fn open(url: &str, sealer: Sealer) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let bad_url = |message: String| StoreError::Url {
            url: redact_url(url),
            message,
        };
        let backend = Backend::of_url(url)
            .ok_or_else(|| bad_url("the scheme must be `sqlite:` or `postgres://`".to_string()))?;
        let (write, read) = match backend {
            Backend::Sqlite => {
                create_parent_dir(url);
                let url = sqlite_url_creating(url);
                // The writer first: it creates the file and migrates it.
                let mut write = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await?;
                sqlite_pragmas(&mut write).await?;
                sqlx::migrate!("src/store/migrations/sqlite")
                    .run(&mut write)
                    .await?;
                let read = AnyPoolOptions::new()
                    // An embedded connection cannot go stale, and a ping
                    // before each use would be one more round trip to its
                    // thread.
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                    .max_connections(4)
                    .connect(&url)
                    .await?;
                (Writer::held(write, url), read)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(12)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect(url)
                    .await?;
                // Several instances may start at once: sqlx's migrator takes
                // an advisory lock, so they apply each migration once.
                sqlx::migrate!("src/store/migrations/postgres")
                    .run(&pool)
                    .await?;
                (Writer::Pool(pool.clone()), pool)
            }
        };
        let sealer = Arc::new(sealer);
        let committer = group::Committer::spawn(write.clone(), backend, sealer.clone());
        Ok(Self {
            write,
            read,
            backend,
            lease_ms: DEFAULT_LEASE_MS,
            sealer,
            committer,
        })
    }

    /// Sets how long a claim keeps other instances of this gateway off a
    /// message (PostgreSQL). It must outlast one delivery attempt.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

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

    pub async fn outbound(&self, message_id: &str) -> Result<Option<OutboxRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = $1"
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
    ///
    /// A claim moves `next_attempt_at` one lease ahead, so a claimed message
    /// is not due again while its attempt is in flight (the worker keeps
    /// several batches in flight) and becomes due if its claimer dies. On
    /// PostgreSQL several instances claim at once: rows another instance is
    /// claiming are skipped (`FOR UPDATE SKIP LOCKED`). SQLite has a single
    /// claimer, which releases its stale claims at start
    /// ([`Store::release_claims`]).
    pub async fn claim_due(&self, now: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        const HEAD: &str = "o.state IN ('queued', 'delivering') AND o.next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.peer = o.peer AND p.case_ref = o.case_ref \
                             AND p.seq < o.seq AND p.state IN ('queued', 'delivering'))";
        const RETURNING: &str = "RETURNING seq, message_id, type, in_reply_to, submitted_at, case_ref, peer, body_sha256, attempts, deadline_at";
        // One statement per claim: on SQLite each statement is a round trip
        // to its connection's thread. Due heads are taken in the pending
        // index's order (due time, then seq), so the scan stops after
        // `limit` heads: ordering by seq alone read and sorted every due row,
        // and a 100,000-message backlog drained at a fifth of the speed.
        // Per-case order does not depend on it: only a case's head is due.
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "UPDATE outbox SET state = 'delivering', attempts = attempts + 1, next_attempt_at = $3 \
                 WHERE seq IN (SELECT o.seq FROM outbox o INDEXED BY outbox_pending WHERE {HEAD} ORDER BY o.next_attempt_at, o.seq LIMIT $2) \
                 {RETURNING}"
            ),
            Backend::Postgres => format!(
                "WITH due AS (SELECT o.seq AS due_seq FROM outbox o WHERE {HEAD} ORDER BY o.next_attempt_at, o.seq LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE outbox SET state = 'delivering', attempts = attempts + 1, next_attempt_at = $3 \
                 FROM due WHERE outbox.seq = due.due_seq {RETURNING}"
            ),
        };
        let lease_until = now.saturating_add(self.lease_ms);
        // A claim is a lease, not a fact worth an fsync: if a crash loses
        // it, the restart releases claims anyway. On SQLite it is one round
        // trip to the writer's thread, from `BEGIN` to `COMMIT`.
        let claim = Script::of(sql, [Arg::Int(now), Arg::Int(limit), Arg::Int(lease_until)]);
        let rows = WriteTx::begin_relaxed(&self.write, self.backend)
            .await?
            .commit(claim)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The bodies, which the claim did not rewrite: they never change
        // while a message is pending, so any connection may read them.
        let sql = format!(
            "SELECT seq, body FROM outbox_body WHERE seq IN ({})",
            placeholders(self.backend, rows.len())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query(&sql);
        for r in &rows {
            query = query.bind(r.get::<i64, _>("seq"));
        }
        let mut bodies: HashMap<i64, String> = query
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| (r.get("seq"), r.get("body")))
            .collect();
        let mut claimed = rows
            .iter()
            .map(|r| {
                let message_id: String = r.get("message_id");
                let sealed = bodies
                    .remove(&r.get::<i64, _>("seq"))
                    .ok_or(StoreError::Db(sqlx::Error::RowNotFound))?;
                let body = self.sealer.open(&message_id, &sealed)?;
                Ok(Claimed {
                    seq: r.get("seq"),
                    message_id,
                    message_type: r.get("type"),
                    in_reply_to: r.get("in_reply_to"),
                    submitted_at: r.get("submitted_at"),
                    case_ref: r.get("case_ref"),
                    peer: r.get("peer"),
                    body,
                    body_sha256: r.get("body_sha256"),
                    attempts: r.get("attempts"),
                    deadline_at: r.get("deadline_at"),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|c| c.seq);
        Ok(claimed)
    }

    /// At start: claims left by a previous run of this gateway (a crash
    /// mid-attempt) are due now rather than when their lease runs out. Only
    /// on SQLite, whose file has one gateway; on PostgreSQL the claims may
    /// belong to other live instances, and their leases decide.
    pub async fn release_claims(&self, now: i64) -> Result<u64, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1 WHERE state = 'delivering' AND next_attempt_at > $1",
        )
        .bind(now)
        .execute(&mut *self.write.acquire().await?)
        .await?
        .rows_affected();
        Ok(done)
    }

    /// The earliest time a head-of-queue message becomes due, if any.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        // SQLite's planner would scan the whole outbox in `seq` order here.
        let from = match self.backend {
            Backend::Sqlite => "outbox o INDEXED BY outbox_pending",
            Backend::Postgres => "outbox o",
        };
        let row = sqlx::query(&format!(
            "SELECT o.next_attempt_at AS due FROM {from} \
             WHERE o.state IN ('queued', 'delivering') \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.peer = o.peer AND p.case_ref = o.case_ref \
                               AND p.seq < o.seq AND p.state IN ('queued', 'delivering')) \
             ORDER BY o.next_attempt_at, o.seq LIMIT 1"
        ))
        .fetch_optional(&self.read)
        .await?;
        // The first head in index order: MIN() over the filter read them all.
        Ok(row.map(|r| r.get("due")))
    }

    /// Records the outcome of attempts, in one transaction: a delivery
    /// opens the sender's timer and closes the timer it answers; a dead
    /// message raises an alert.
    ///
    /// On SQLite, deliveries and retries commit without waiting for the
    /// disk: if a crash of the machine loses them, the messages are sent
    /// again, and the peer, idempotent by `message_id`, answers with the
    /// receipt it already gave. The next durable commit (a submission, a
    /// receipt) covers them, the WAL being written in order. Refusals and
    /// dead messages, which raise alerts and are not repeatable, wait for
    /// the disk.
    pub async fn record(&self, results: &[(i64, Outcome)]) -> Result<(), StoreError> {
        let repeatable = results
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Delivered { .. } | Outcome::Retry { .. }));
        let mut tx = if repeatable {
            WriteTx::begin_relaxed(&self.write, self.backend).await?
        } else {
            WriteTx::begin(&self.write, self.backend).await?
        };
        record_in(&mut tx, self.backend, results).await?;
        tx.commit(Script::new()).await?;
        Ok(())
    }

    /// Stores a message from a peer if the case's lifecycle allows it,
    /// idempotently by `message_id`: a resend gets the stored receipt.
    pub async fn receive(&self, m: &NewInbound) -> Result<Received, StoreError> {
        // One answer per message, always.
        self.receive_many(std::slice::from_ref(m))
            .await?
            .pop()
            .ok_or(StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// Stores several messages from a peer in one transaction (one fsync),
    /// each judged as [`Store::receive`] would alone, in order.
    pub async fn receive_many(&self, messages: &[NewInbound]) -> Result<Vec<Received>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = WriteTx::begin(&self.write, self.backend).await?;
        // Every case lock up front, in one order, so two instances receiving
        // overlapping batches cannot deadlock.
        let mut cases: Vec<&str> = messages.iter().map(|m| m.case_ref.as_str()).collect();
        cases.sort_unstable();
        cases.dedup();
        tx.lock_cases(&cases).await?;
        // The ids already stored and the cases' histories, in one round
        // trip (a case whose messages are all resends is read for nothing).
        let mut reads = Script::of(
            format!(
                "SELECT message_id, body_sha256, receipt FROM inbox WHERE message_id IN ({})",
                in_of(self.backend, messages.len())
            ),
            messages.iter().map(|m| Arg::from(&m.message_id)),
        );
        push_case_histories(&mut reads, self.backend, &cases);
        let mut sets = tx.run_sets(reads).await?.into_iter();
        // message id -> (content hash, receipt), of what is stored or about to be.
        let mut known: HashMap<String, (String, String)> = sets
            .next()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r.get("message_id"),
                    (r.get("body_sha256"), r.get("receipt")),
                )
            })
            .collect();
        let wanted: std::collections::HashSet<&str> = messages
            .iter()
            .filter(|m| !known.contains_key(&m.message_id))
            .map(|m| m.case_ref.as_str())
            .collect();
        let mut histories = histories_of(&self.sealer, &sets.next().unwrap_or_default(), |c| {
            wanted.contains(c)
        })?;
        let mut fresh: Vec<&NewInbound> = Vec::new();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            if let Some((sha, receipt)) = known.get(&m.message_id) {
                out.push(if *sha == m.body_sha256 {
                    Received::Stored {
                        receipt: receipt.clone(),
                        fresh: false,
                    }
                } else {
                    Received::Conflict
                });
                continue;
            }
            let history = histories.entry(m.case_ref.clone()).or_default();
            if let Err(e) = admission::admit_in_case(&m.case_ref, history, &m.case_message) {
                out.push(Received::Refused(e));
                continue;
            }
            history.push(m.case_message.clone());
            known.insert(
                m.message_id.clone(),
                (m.body_sha256.clone(), m.receipt.clone()),
            );
            out.push(Received::Stored {
                receipt: m.receipt.clone(),
                fresh: true,
            });
            fresh.push(m);
        }
        let mut writes = Script::new();
        if !fresh.is_empty() {
            writes.push(
                format!(
                    "INSERT INTO inbox (message_id, case_ref, sender, type, in_reply_to, body, body_sha256, received_at, receipt) \
                     VALUES {}",
                    values_of(self.backend, fresh.len(), 9)
                ),
                fresh.iter().flat_map(|m| {
                    [
                        Arg::from(&m.message_id),
                        Arg::from(&m.case_ref),
                        Arg::from(&m.sender),
                        Arg::from(&m.message_type),
                        Arg::from(&m.in_reply_to),
                        Arg::String(self.sealer.seal(&m.message_id, &m.body)),
                        Arg::from(&m.body_sha256),
                        Arg::Int(m.received_at),
                        Arg::from(&m.receipt),
                    ]
                }),
            );
            push_case_log(
                &mut writes,
                self.backend,
                fresh
                    .iter()
                    .map(|m| (m.case_ref.as_str(), m.message_id.as_str())),
                "in",
            );
            let timers: Vec<&NewTimer> = fresh.iter().filter_map(|m| m.timer.as_ref()).collect();
            timers::push_timers(&mut writes, self.backend, &timers);
        }
        // An answer closes the timers of the message it answers, which
        // takes reads; without one, the writes go with the `COMMIT`.
        if fresh.iter().any(|m| m.in_reply_to.is_some()) {
            tx.run(writes).await?;
            writes = Script::new();
            for m in &fresh {
                if let Some(reply_to) = &m.in_reply_to {
                    timers::close_timers(
                        tx.conn().await?,
                        Side::AwaitingAnswer,
                        reply_to,
                        &m.message_type,
                        &m.message_id,
                        m.received_at,
                    )
                    .await?;
                }
            }
        }
        tx.commit(writes).await?;
        Ok(out)
    }

    /// The case's state on this node, if the case exists.
    pub async fn case_state(&self, case_ref: &str) -> Result<Option<CaseState>, StoreError> {
        let history = self.case_history(case_ref).await?;
        Ok(lifecycle::replay(case_ref, &history))
    }

    /// The lifecycle's view of every message of the case, sent and
    /// received, in the order the case saw them.
    pub async fn case_history(&self, case_ref: &str) -> Result<Vec<CaseMessage>, StoreError> {
        let mut conn = self.read.acquire().await?;
        case_history(&mut conn, &self.sealer, case_ref).await
    }

    /// Received messages after `cursor`, oldest first.
    pub async fn inbox_after(&self, cursor: i64, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM inbox WHERE seq > $1 ORDER BY seq LIMIT $2")
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
        let row = sqlx::query("SELECT * FROM inbox WHERE message_id = $1")
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
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE case_ref = $1 ORDER BY seq"
        ))
        .bind(case_ref)
        .fetch_all(&self.read)
        .await?;
        let inb = sqlx::query("SELECT * FROM inbox WHERE case_ref = $1 ORDER BY seq")
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
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1 IS NULL OR state = $2) ORDER BY seq DESC LIMIT $3"
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
            "UPDATE outbox SET state = 'dead', last_error = $1 WHERE message_id = $2 AND state IN ('queued', 'delivering')",
        )
        .bind(error)
        .bind(message_id)
        .execute(&mut *self.write.acquire().await?)
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

#[cfg(test)]
mod tests;
