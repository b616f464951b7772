//! Retention: the payloads of cases closed or withdrawn longer ago than
//! their agreement's retention period are replaced by a skeleton that keeps
//! only what the lifecycle needs (type, sender, reply target and the
//! deciding field of each message), so the case's state and timeline stay
//! and no personal data remains.

use serde::Serialize;
use serde_json::{Value, json};

use super::tx::{Script, WriteTx, query};
use super::{Store, StoreError};

/// Payload fields the lifecycle reads; everything else is dropped.
const KEPT: &[&str] = &["accepted", "decision", "record", "case_status"];

#[derive(Debug, Clone, Serialize)]
pub struct PurgeCandidate {
    pub case_ref: String,
    pub state: String,
    pub last_activity: i64,
    pub messages: usize,
}

fn skeleton(body: &str, purged_at: i64) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let payload: serde_json::Map<String, Value> = KEPT
        .iter()
        .filter_map(|k| v["payload"].get(*k).map(|x| (k.to_string(), x.clone())))
        .collect();
    Some(
        json!({
            "message_id": v["message_id"], "case_ref": v["case_ref"], "type": v["type"],
            "schema_version": v["schema_version"], "from": v["from"], "to": v["to"],
            "in_reply_to": v["in_reply_to"], "created_at": v["created_at"],
            "payload": payload, "purged_at": crate::clock::rfc3339_ms(purged_at),
        })
        .to_string(),
    )
}

impl Store {
    /// When the case's payloads were purged (unix ms), if they were.
    pub async fn purged_at(&self, case_ref: &str) -> Result<Option<i64>, StoreError> {
        let row = query("SELECT purged_at FROM purged_cases WHERE case_ref = $1")
            .bind(case_ref)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| r.get("purged_at")).transpose()
    }

    /// Final (closed or withdrawn) cases, not yet purged, whose last message
    /// is older than `cutoff_of(case_ref)` (unix ms).
    pub async fn purge_candidates(
        &self,
        cutoff_of: impl Fn(&str) -> i64,
    ) -> Result<Vec<PurgeCandidate>, StoreError> {
        let rows = query(
            "SELECT l.case_ref, MAX(COALESCE(o.submitted_at, i.received_at)) AS last, COUNT(*) AS n FROM case_log l \
             LEFT JOIN outbox o ON l.direction = 'out' AND o.message_id = l.message_id \
             LEFT JOIN inbox i ON l.direction = 'in' AND i.message_id = l.message_id \
             WHERE l.case_ref NOT IN (SELECT case_ref FROM purged_cases) GROUP BY l.case_ref",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let case_ref: String = r.get("case_ref")?;
            let last: i64 = r.get("last")?;
            if last >= cutoff_of(&case_ref) {
                continue;
            }
            let state = self.case_state(&case_ref).await?;
            if let Some(state) = state.filter(|s| s.is_final()) {
                out.push(PurgeCandidate {
                    case_ref,
                    state: state.as_str().to_string(),
                    last_activity: last,
                    messages: usize::try_from(r.get::<i64>("n")?).unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    /// Replaces every body of the case by its skeleton, in one transaction.
    pub async fn purge_case(&self, c: &PurgeCandidate, now: i64) -> Result<(), StoreError> {
        let mut tx = WriteTx::begin(&self.write, self.backend).await?;
        tx.lock_cases(&[&c.case_ref]).await?;
        // Another instance may have purged it meanwhile.
        let done = query("SELECT 1 AS purged FROM purged_cases WHERE case_ref = $1")
            .bind(&c.case_ref)
            .fetch_optional(&mut tx)
            .await?;
        if done.is_some() {
            return Ok(());
        }
        // (the table holding the bodies, by `seq`; the query for them)
        for (table, select) in [
            (
                "outbox_body",
                "SELECT o.message_id, o.seq AS row_key, b.body FROM outbox o \
                 JOIN outbox_body b ON b.seq = o.seq WHERE o.case_ref = $1 ORDER BY o.submitted_at",
            ),
            (
                "inbox",
                "SELECT message_id, seq AS row_key, body FROM inbox WHERE case_ref = $1 ORDER BY received_at",
            ),
        ] {
            let rows = query(select).bind(&c.case_ref).fetch_all(&mut tx).await?;
            for r in &rows {
                let id: String = r.get("message_id")?;
                let body = self.sealer.open(&id, r.get::<&str>("body")?)?;
                let Some(skel) = skeleton(&body, now) else {
                    continue;
                };
                query(format!("UPDATE {table} SET body = $1 WHERE seq = $2"))
                    .bind(self.sealer.seal(&id, &skel))
                    .bind(r.get::<i64>("row_key")?)
                    .execute(&mut tx)
                    .await?;
            }
        }
        // What was found by its documents is found no more.
        query("DELETE FROM case_search WHERE case_ref = $1")
            .bind(&c.case_ref)
            .execute(&mut tx)
            .await?;
        query("INSERT INTO purged_cases (case_ref, state, purged_at) VALUES ($1, $2, $3)")
            .bind(&c.case_ref)
            .bind(&c.state)
            .bind(now)
            .execute(&mut tx)
            .await?;
        tx.commit(Script::new()).await?;
        Ok(())
    }
}

/// Purges (or, with `dry_run`, lists) every case past its retention.
/// `retention_days_of` gives the retention of a case's agreement.
pub async fn purge(
    store: &Store,
    now: i64,
    dry_run: bool,
    retention_days_of: impl Fn(&str) -> u32,
) -> Result<Vec<PurgeCandidate>, StoreError> {
    let candidates = store
        .purge_candidates(|case_ref| now - i64::from(retention_days_of(case_ref)) * 86_400_000)
        .await?;
    if !dry_run {
        for c in &candidates {
            store.purge_case(c, now).await?;
        }
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_keep_only_what_the_lifecycle_needs() {
        let body = json!({"message_id": "m", "case_ref": "TH-KH-2026-000001", "type": "reintegration.report",
            "schema_version": 1, "from": "KH", "to": "TH", "in_reply_to": null, "created_at": "2026-01-01T00:00:00Z",
            "payload": {"case_status": "closed", "notes": "Synthetic personal note"}})
        .to_string();
        let s = skeleton(&body, 0).unwrap();
        assert!(s.contains("\"case_status\":\"closed\""));
        assert!(!s.contains("Synthetic personal note"));
    }
}
