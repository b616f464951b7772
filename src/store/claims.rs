//! The delivery worker's side of the outbox: claiming what is due (one
//! head per case, leased on PostgreSQL), releasing claims after a stop,
//! and recording each attempt's outcome (receipt, refusal, retry, dead).

use super::*;

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
// Outcomes live for one step, one per claimed message; boxing the common
// case to shrink the rare ones buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Delivered {
        receipt: String,
        /// This node's signature of the envelope, as it was sent.
        signature: Option<String>,
        /// The receiver's signature of `receipt`, verified.
        receipt_signature: Option<String>,
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

/// A pending message that heads its (peer, case) queue: every earlier one
/// of its case is final.
const PENDING_HEAD: &str = "o.state IN ('queued', 'delivering') \
     AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.peer = o.peer AND p.case_ref = o.case_ref \
                     AND p.seq < o.seq AND p.state IN ('queued', 'delivering'))";

/// The writes of [`Store::record`], inside the caller's transaction: the
/// bulk (deliveries, the timers they open, retries) in one round trip.
pub(super) async fn record_in(
    tx: &mut WriteTx,
    backend: Backend,
    results: &[(i64, Outcome)],
) -> Result<(), StoreError> {
    let mut bulk = Script::new();
    let delivered: Vec<(i64, &Outcome)> = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Delivered { .. }))
        .map(|(seq, o)| (*seq, o))
        .collect();
    if !delivered.is_empty() {
        // A row already delivered is left alone: another instance's
        // attempt, after this one's lease ran out, recorded it first.
        bulk.push(
            format!(
                "UPDATE outbox SET state = 'delivered', receipt = v.column2, delivered_at = v.column3, last_error = NULL, \
                 signature = v.column4, receipt_signature = v.column5 \
                 FROM (VALUES {}) AS v WHERE outbox.seq = v.column1 AND outbox.state <> 'delivered' \
                 RETURNING seq, message_id, type, in_reply_to",
                values_of(backend, delivered.len(), 5)
            ),
            delivered.iter().flat_map(|&(seq, o)| match o {
                Outcome::Delivered {
                    receipt,
                    at,
                    signature,
                    receipt_signature,
                    ..
                } => vec![
                    Arg::Int(seq),
                    Arg::Str(receipt),
                    Arg::Int(*at),
                    Arg::OptStr(signature.as_deref()),
                    Arg::OptStr(receipt_signature.as_deref()),
                ],
                _ => Vec::new(),
            }),
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
        let Some(reply_to) = row.get::<Option<String>>("in_reply_to")? else {
            continue;
        };
        let seq: i64 = row.get("seq")?;
        let Some(received_at) = results.iter().find_map(|(s, o)| match o {
            Outcome::Delivered { received_at, .. } if *s == seq => Some(*received_at),
            _ => None,
        }) else {
            continue;
        };
        let (id, t): (String, String) = (row.get("message_id")?, row.get("type")?);
        timers::close_timers(tx, Side::AnswerDue, &reply_to, &t, &id, received_at).await?;
    }
    for (seq, outcome) in results {
        match outcome {
            Outcome::Delivered { .. } | Outcome::Retry { .. } => {}
            Outcome::Rejected { reason } => {
                query(
                    "UPDATE outbox SET state = 'rejected', last_error = $1 \
                     WHERE seq = $2 AND state IN ('queued', 'delivering')",
                )
                .bind(reason)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Dead { error, at } => {
                let Some(row) = query(
                    "UPDATE outbox SET state = 'dead', last_error = $1 \
                     WHERE seq = $2 AND state IN ('queued', 'delivering') \
                     RETURNING message_id, case_ref, type, peer, attempts",
                )
                .bind(error)
                .bind(seq)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    continue;
                };
                timers::insert_event(
                    tx,
                    &NewEvent {
                        case_ref: row.get("case_ref")?,
                        message_id: Some(row.get("message_id")?),
                        kind: "dead",
                        at: *at,
                        detail: serde_json::json!({
                            "type": row.get::<&str>("type")?,
                            "peer": row.get::<&str>("peer")?,
                            "attempts": row.get::<i64>("attempts")?,
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

/// The claim of [`Store::claim_heads`].
pub(super) fn claim_sql(backend: Backend, filter: &str, limit: &str, lease_until: &str) -> String {
    const RETURNING: &str = "RETURNING seq, message_id, type, in_reply_to, submitted_at, case_ref, peer, body_sha256, attempts, deadline_at";
    // Due heads are taken in the pending index's order (due time, then
    // seq), so the scan stops after `limit` heads: ordering by seq alone
    // read and sorted every due row, and a 100,000-message backlog drained
    // at a fifth of the speed. Per-case order does not depend on it: only a
    // case's head is due.
    match backend {
        Backend::Sqlite => format!(
            "UPDATE outbox SET state = 'delivering', attempts = attempts + 1, next_attempt_at = {lease_until} \
             WHERE seq IN (SELECT o.seq FROM outbox o INDEXED BY outbox_pending WHERE {filter} ORDER BY o.next_attempt_at, o.seq LIMIT {limit}) \
             {RETURNING}"
        ),
        Backend::Postgres => format!(
            "WITH due AS (SELECT o.seq AS due_seq FROM outbox o WHERE {filter} ORDER BY o.next_attempt_at, o.seq LIMIT {limit} FOR UPDATE SKIP LOCKED) \
             UPDATE outbox SET state = 'delivering', attempts = attempts + 1, next_attempt_at = {lease_until} \
             FROM due WHERE outbox.seq = due.due_seq {RETURNING}"
        ),
    }
}

/// The filter of [`Store::claim_due_except`]: due heads, except for the
/// `down` peers' messages not past their deadline (`$4..`).
pub(super) fn due_filter(down: usize) -> String {
    let mut filter = format!("{PENDING_HEAD} AND o.next_attempt_at <= $1");
    if down > 0 {
        let list: Vec<String> = (4..4 + down).map(|i| format!("${i}")).collect();
        filter.push_str(&format!(
            " AND (o.deadline_at <= $1 OR o.peer NOT IN ({}))",
            list.join(", ")
        ));
    }
    filter
}

/// The read of [`Store::next_due_except`], for `down` peers left out.
pub(super) fn next_due_sql(backend: Backend, down: usize) -> String {
    // SQLite's planner would scan the whole outbox in `seq` order here.
    let from = match backend {
        Backend::Sqlite => "outbox o INDEXED BY outbox_pending",
        Backend::Postgres => "outbox o",
    };
    let except = if down == 0 {
        String::new()
    } else {
        format!(" AND o.peer NOT IN ({})", in_of(backend, down))
    };
    format!(
        "SELECT o.next_attempt_at AS due FROM {from} WHERE {PENDING_HEAD}{except} \
         ORDER BY o.next_attempt_at, o.seq LIMIT 1"
    )
}

impl Store {
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
        self.claim_due_except(now, limit, &[]).await
    }

    /// [`Store::claim_due`], leaving out the messages for the `down` peers
    /// (the worker sends each of those one probe at a time,
    /// [`Store::claim_probe`]) unless their delivery deadline has passed:
    /// an attempt past the deadline is what makes a message `dead`.
    pub async fn claim_due_except(
        &self,
        now: i64,
        limit: i64,
        down: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        let filter = due_filter(down.len());
        let lease_until = now.saturating_add(self.lease_ms);
        let args = [Arg::Int(now), Arg::Int(limit), Arg::Int(lease_until)]
            .into_iter()
            .chain(down.iter().map(Arg::from));
        self.claim_heads(&filter, "$2", "$3", args).await
    }

    /// The probe of a peer that is down: of its messages that head their
    /// case, the one due soonest (due now, or the oldest waiting), claimed
    /// like any other. The caller probes only when none of the peer's
    /// messages is in flight, so the message is not one an attempt still
    /// holds.
    pub async fn claim_probe(&self, now: i64, peer: &str) -> Result<Option<Claimed>, StoreError> {
        let filter = format!("{PENDING_HEAD} AND o.peer = $1");
        let lease_until = now.saturating_add(self.lease_ms);
        let args = [Arg::Str(peer), Arg::Int(lease_until)];
        Ok(self.claim_heads(&filter, "1", "$2", args).await?.pop())
    }

    /// Claims up to `limit` heads matching `filter` (over `outbox o`),
    /// soonest due first: marks them `delivering`, counts the attempt, and
    /// moves their next attempt to `lease_until`. The three are SQL text
    /// (placeholders or literals) numbered with `args`.
    async fn claim_heads<'a>(
        &self,
        filter: &str,
        limit: &str,
        lease_until: &str,
        args: impl IntoIterator<Item = Arg<'a>>,
    ) -> Result<Vec<Claimed>, StoreError> {
        // One statement per claim, one job for SQLite's writer thread.
        let sql = claim_sql(self.backend, filter, limit, lease_until);
        // A claim is a lease, not a fact worth an fsync: if a crash loses
        // it, the restart releases claims anyway. On SQLite it is one round
        // trip to the writer's thread, from `BEGIN` to `COMMIT`.
        let claim = Script::of(sql, args);
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
        let mut q = query(sql);
        for r in &rows {
            q = q.bind(r.get::<i64>("seq")?);
        }
        let mut bodies: HashMap<i64, String> = q
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| Ok((r.get("seq")?, r.get("body")?)))
            .collect::<Result<_, StoreError>>()?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                let message_id: String = r.get("message_id")?;
                let sealed = bodies
                    .remove(&r.get::<i64>("seq")?)
                    .ok_or(StoreError::Missing("the body of a claimed message"))?;
                let body = self.sealer.open(&message_id, &sealed)?;
                Ok(Claimed {
                    seq: r.get("seq")?,
                    message_id,
                    message_type: r.get("type")?,
                    in_reply_to: r.get("in_reply_to")?,
                    submitted_at: r.get("submitted_at")?,
                    case_ref: r.get("case_ref")?,
                    peer: r.get("peer")?,
                    body,
                    body_sha256: r.get("body_sha256")?,
                    attempts: r.get("attempts")?,
                    deadline_at: r.get("deadline_at")?,
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
        let done = query(
            "UPDATE outbox SET next_attempt_at = $1 WHERE state = 'delivering' AND next_attempt_at > $1",
        )
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done)
    }

    /// The earliest time a head-of-queue message becomes due, if any.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.next_due_except(&[]).await
    }

    /// [`Store::next_due`] among the messages for peers other than `down`
    /// (whose probes the worker times itself).
    pub async fn next_due_except(&self, down: &[String]) -> Result<Option<i64>, StoreError> {
        let sql = next_due_sql(self.backend, down.len());
        let mut q = query(sql);
        for peer in down {
            q = q.bind(peer);
        }
        let row = q.fetch_optional(&self.read).await?;
        // The first head in index order: MIN() over the filter read them all.
        row.map(|r| r.get("due")).transpose()
    }

    /// A peer that was down answered: every message waiting for it is due
    /// now, not when its own backoff runs out. Only pending messages (and
    /// only their due time: attempts are not touched); how many were moved.
    /// A message whose attempt is still in flight (PostgreSQL: another
    /// instance's) may so be sent twice, which the peer's idempotent inbox
    /// answers with the receipt it already gave.
    pub async fn due_now_for_peer(&self, peer: &str, now: i64) -> Result<u64, StoreError> {
        // Repeatable, like a claim: if a crash loses it, the messages wait
        // out their backoff, as they would have anyway.
        let mut tx = WriteTx::begin_relaxed(&self.write, self.backend).await?;
        let moved = query(
            "UPDATE outbox SET next_attempt_at = $1 \
             WHERE peer = $2 AND state IN ('queued', 'delivering') AND next_attempt_at > $1",
        )
        .bind(now)
        .bind(peer)
        .execute(&mut tx)
        .await?;
        tx.commit(Script::new()).await?;
        Ok(moved)
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
}
