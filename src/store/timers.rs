//! Timer and case-event rows. The deadline rules live in
//! `crate::domain::deadline` and the scheduling in `crate::app::timers`;
//! this is only how they are kept.

use serde::Serialize;

pub use crate::domain::deadline::{NewTimer, Side};

use super::row::Row;
use super::tx::{Arg, Script, WriteTx, query};
use super::{Backend, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct TimerRow {
    pub id: i64,
    pub case_ref: String,
    pub message_id: String,
    pub message_type: String,
    pub expected_type: String,
    pub side: String,
    pub peer: String,
    pub agreement: String,
    pub started_at: i64,
    pub due_at: i64,
    pub state: String,
    pub reminders_fired: i64,
    pub next_event_at: Option<i64>,
    pub breached_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub answer_id: Option<String>,
}

impl TimerRow {
    fn from_row(r: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.get("id")?,
            case_ref: r.get("case_ref")?,
            message_id: r.get("message_id")?,
            message_type: r.get("message_type")?,
            expected_type: r.get("expected_type")?,
            side: r.get("side")?,
            peer: r.get("peer")?,
            agreement: r.get("agreement")?,
            started_at: r.get("started_at")?,
            due_at: r.get("due_at")?,
            state: r.get("state")?,
            reminders_fired: r.get("reminders_fired")?,
            next_event_at: r.get("next_event_at")?,
            breached_at: r.get("breached_at")?,
            answered_at: r.get("answered_at")?,
            answer_id: r.get("answer_id")?,
        })
    }
}

/// A case event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub case_ref: String,
    pub message_id: Option<String>,
    pub kind: &'static str,
    pub at: i64,
    pub detail: serde_json::Value,
    pub alert: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub case_ref: String,
    pub message_id: Option<String>,
    pub kind: String,
    pub at: i64,
    pub detail: serde_json::Value,
    pub alert_state: String,
    pub alert_attempts: i64,
}

impl EventRow {
    fn from_row(r: &Row) -> Result<Self, StoreError> {
        let detail: &str = r.get("detail")?;
        Ok(Self {
            id: r.get("id")?,
            case_ref: r.get("case_ref")?,
            message_id: r.get("message_id")?,
            kind: r.get("kind")?,
            at: r.get("at")?,
            detail: serde_json::from_str(detail).map_err(|e| StoreError::Row {
                column: "detail".to_string(),
                message: format!("not JSON: {e}"),
            })?,
            alert_state: r.get("alert_state")?,
            alert_attempts: r.get("alert_attempts")?,
        })
    }
}

/// Opens timers, in one statement per thousand; a timer already open for
/// the same message and side is left as it is.
pub(super) fn push_timers<'a>(script: &mut Script<'a>, backend: Backend, timers: &[&'a NewTimer]) {
    // Bounded statements: PostgreSQL takes at most 65,535 parameters.
    for chunk in timers.chunks(1_000) {
        script.push(
            format!(
                "INSERT INTO timers (case_ref, message_id, message_type, expected_type, side, peer, agreement, \
                 started_at, due_at, state, next_event_at) VALUES {} \
                 ON CONFLICT (message_id, side) DO NOTHING",
                super::values_of(backend, chunk.len(), 11)
            ),
            chunk.iter().flat_map(|t| {
                [
                    Arg::from(&t.case_ref),
                    Arg::from(&t.message_id),
                    Arg::from(&t.message_type),
                    Arg::from(&t.expected_type),
                    Arg::Str(t.side.as_str()),
                    Arg::from(&t.peer),
                    Arg::from(&t.agreement),
                    Arg::Int(t.started_at),
                    Arg::Int(t.due_at),
                    Arg::Str("open"),
                    Arg::from(t.first_event_at),
                ]
            }),
        );
    }
}

pub(super) async fn insert_event(tx: &mut WriteTx, e: &NewEvent) -> Result<(), StoreError> {
    query(
        "INSERT INTO case_events (case_ref, message_id, kind, at, detail, alert_state, alert_next_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&e.case_ref)
    .bind(&e.message_id)
    .bind(e.kind)
    .bind(e.at)
    .bind(e.detail.to_string())
    .bind(if e.alert { "pending" } else { "none" })
    .bind(e.alert.then_some(e.at))
    .execute(tx)
    .await?;
    Ok(())
}

/// Closes the timers of `side` that `answer` (of `answer_type`, replying to
/// `in_reply_to`) satisfies, recording an `answered` or `answered_late` event.
pub(super) async fn close_timers(
    tx: &mut WriteTx,
    side: Side,
    in_reply_to: &str,
    answer_type: &str,
    answer_id: &str,
    answered_at: i64,
) -> Result<u64, StoreError> {
    let rows = query(
        "SELECT * FROM timers WHERE message_id = $1 AND side = $2 AND expected_type = $3 AND state IN ('open', 'breached')",
    )
    .bind(in_reply_to)
    .bind(side.as_str())
    .bind(answer_type)
    .fetch_all(&mut *tx)
    .await?;
    for r in &rows {
        let t = TimerRow::from_row(r)?;
        query(
            "UPDATE timers SET state = 'met', answered_at = $1, answer_id = $2, next_event_at = NULL WHERE id = $3",
        )
        .bind(answered_at)
        .bind(answer_id)
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
        let late = t.breached_at.is_some() || answered_at > t.due_at;
        insert_event(
            tx,
            &NewEvent {
                case_ref: t.case_ref.clone(),
                message_id: Some(t.message_id.clone()),
                kind: if late { "answered_late" } else { "answered" },
                at: answered_at,
                detail: serde_json::json!({
                    "timer_id": t.id, "side": t.side, "expected_type": t.expected_type,
                    "answer_id": answer_id, "due_at": crate::clock::rfc3339_ms(t.due_at),
                }),
                alert: false,
            },
        )
        .await?;
    }
    Ok(rows.len() as u64)
}

pub(super) const DUE_TIMERS: &str = "SELECT * FROM timers WHERE next_event_at IS NOT NULL AND next_event_at <= $1 \
     ORDER BY next_event_at LIMIT $2";
pub(super) const CASE_TIMERS: &str = "SELECT * FROM timers WHERE case_ref = $1 ORDER BY id";
pub(super) const CASE_EVENTS: &str = "SELECT * FROM case_events WHERE case_ref = $1 ORDER BY id";
pub(super) const PENDING_ALERTS: &str = "SELECT * FROM case_events WHERE alert_state = 'pending' AND alert_next_at <= $1 \
     ORDER BY alert_next_at LIMIT $2";

/// Filter of `GET /v1/timers`.
#[derive(Debug, Clone, Default)]
pub struct TimerFilter {
    pub state: Option<String>,
    pub peer: Option<String>,
    pub due_before: Option<i64>,
    pub after_id: i64,
    pub limit: i64,
}

/// The read of [`Store::timers`]: a condition only for what the filter
/// names, so a state with a due bound uses `timers_state_due` (a `$n IS
/// NULL OR` condition scans every timer). Parameters in the filter's
/// order, the absent ones left out, then the limit.
pub(super) fn list_sql(f: &TimerFilter) -> String {
    let mut n = super::sql::Numbered::after_first();
    let mut next = || n.next();
    let mut sql = String::from("SELECT * FROM timers WHERE id > $1");
    if f.state.is_some() {
        sql.push_str(&format!(" AND state = {}", next()));
    }
    if f.peer.is_some() {
        sql.push_str(&format!(" AND peer = {}", next()));
    }
    if f.due_before.is_some() {
        sql.push_str(&format!(" AND due_at < {}", next()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", next()));
    sql
}

/// One firing decided by the scheduler.
#[derive(Debug, Clone)]
pub struct Firing {
    pub timer_id: i64,
    pub reminders_fired: i64,
    pub next_event_at: Option<i64>,
    pub breached_at: Option<i64>,
    pub event: NewEvent,
}

impl Store {
    /// Opens many timers in one transaction (benchmarks, imports).
    pub async fn insert_timers(&self, timers: &[NewTimer]) -> Result<(), StoreError> {
        let tx = WriteTx::begin(&self.write, self.backend).await?;
        let mut script = Script::new();
        push_timers(
            &mut script,
            self.backend,
            &timers.iter().collect::<Vec<_>>(),
        );
        tx.commit(script).await?;
        Ok(())
    }

    /// Timers whose next event is due at `now`, earliest first.
    pub async fn due_timers(&self, now: i64, limit: i64) -> Result<Vec<TimerRow>, StoreError> {
        let rows = query(DUE_TIMERS)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(TimerRow::from_row).collect()
    }

    /// The earliest pending timer event.
    pub async fn next_timer_event(&self) -> Result<Option<i64>, StoreError> {
        let row =
            query("SELECT MIN(next_event_at) AS at FROM timers WHERE next_event_at IS NOT NULL")
                .fetch_one(&self.read)
                .await?;
        row.get("at")
    }

    /// Applies firings; a firing whose timer moved on meanwhile (answered,
    /// or fired by another instance) is skipped, so each event fires once.
    pub async fn apply_firings(&self, firings: &[(TimerRow, Firing)]) -> Result<usize, StoreError> {
        let mut tx = WriteTx::begin(&self.write, self.backend).await?;
        let mut applied = 0;
        for (before, f) in firings {
            let state = if f.breached_at.is_some() {
                "breached"
            } else {
                before.state.as_str()
            };
            let done = query(
                "UPDATE timers SET reminders_fired = $1, next_event_at = $2, breached_at = COALESCE(breached_at, $3), state = $4 \
                 WHERE id = $5 AND next_event_at IS NOT DISTINCT FROM $6 AND reminders_fired = $7 AND state = $8",
            )
            .bind(f.reminders_fired)
            .bind(f.next_event_at)
            .bind(f.breached_at)
            .bind(state)
            .bind(f.timer_id)
            .bind(before.next_event_at)
            .bind(before.reminders_fired)
            .bind(&before.state)
            .execute(&mut tx)
            .await?;
            if done == 1 {
                insert_event(&mut tx, &f.event).await?;
                applied += 1;
            }
        }
        tx.commit(Script::new()).await?;
        Ok(applied)
    }

    pub async fn timers(&self, f: &TimerFilter) -> Result<Vec<TimerRow>, StoreError> {
        let mut q = query(list_sql(f)).bind(f.after_id);
        if let Some(state) = &f.state {
            q = q.bind(state);
        }
        if let Some(peer) = &f.peer {
            q = q.bind(peer);
        }
        if let Some(due_before) = f.due_before {
            q = q.bind(due_before);
        }
        let rows = q.bind(f.limit).fetch_all(&self.read).await?;
        rows.iter().map(TimerRow::from_row).collect()
    }

    pub async fn case_timers(&self, case_ref: &str) -> Result<Vec<TimerRow>, StoreError> {
        let rows = query(CASE_TIMERS)
            .bind(case_ref)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(TimerRow::from_row).collect()
    }

    pub async fn case_events(&self, case_ref: &str) -> Result<Vec<EventRow>, StoreError> {
        let rows = query(CASE_EVENTS)
            .bind(case_ref)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(EventRow::from_row).collect()
    }

    /// Every timer started at or after `since` (for SLA figures).
    pub async fn timers_since(&self, since: i64) -> Result<Vec<TimerRow>, StoreError> {
        let rows = query("SELECT * FROM timers WHERE started_at >= $1 ORDER BY id")
            .bind(since)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(TimerRow::from_row).collect()
    }

    pub async fn timer_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = query("SELECT state, COUNT(*) AS n FROM timers GROUP BY state ORDER BY state")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("state")?, r.get("n")?)))
            .collect()
    }

    /// Alerts due for sending to the operator webhook.
    pub async fn pending_alerts(&self, now: i64, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = query(PENDING_ALERTS)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(EventRow::from_row).collect()
    }

    pub async fn next_alert_at(&self) -> Result<Option<i64>, StoreError> {
        let row =
            query("SELECT MIN(alert_next_at) AS at FROM case_events WHERE alert_state = 'pending'")
                .fetch_one(&self.read)
                .await?;
        row.get("at")
    }

    /// Records a webhook attempt: sent, to retry at `retry_at`, or given up.
    pub async fn mark_alert(
        &self,
        id: i64,
        sent: bool,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = match (sent, retry_at) {
            (true, _) => "sent",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        query(
            "UPDATE case_events SET alert_state = $1, alert_attempts = alert_attempts + 1, alert_next_at = $2 WHERE id = $3",
        )
        .bind(state)
        .bind(retry_at)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Puts a `dead` or `rejected` message back in the queue with a fresh
    /// delivery deadline. Returns false when there is no such message or it
    /// is not in a final failed state.
    pub async fn requeue(
        &self,
        message_id: &str,
        now: i64,
        deadline_at: i64,
    ) -> Result<bool, StoreError> {
        let done = query(
            "UPDATE outbox SET state = 'queued', next_attempt_at = $1, deadline_at = $2, attempts = 0 \
             WHERE message_id = $3 AND state IN ('dead', 'rejected')",
        )
        .bind(now)
        .bind(deadline_at)
        .bind(message_id)
        .execute(&self.write)
        .await?;
        Ok(done == 1)
    }
}
