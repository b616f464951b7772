//! A withdrawal of consent received from the peer: the payloads this node
//! received in the case are reduced, in one transaction, to what the
//! agreement allows without consent, and the withdrawal is recorded.

use serde_json::Value;

use super::*;

impl Store {
    /// Reduces every payload received in `case_ref` with `reduce` (which
    /// says whether it changed one), records the withdrawal by
    /// `message_id` at `now`, and drops the case's search entries (what
    /// they found is gone). How many payloads changed.
    pub async fn withdraw_consent(
        &self,
        case_ref: &str,
        message_id: &str,
        now: i64,
        reduce: impl Fn(&str, &mut Value) -> bool,
    ) -> Result<usize, StoreError> {
        let mut tx = WriteTx::begin(&self.write, self.backend).await?;
        tx.lock_cases(&[case_ref]).await?;
        let rows = query("SELECT seq, message_id, type, body FROM inbox WHERE case_ref = $1")
            .bind(case_ref)
            .fetch_all(&mut tx)
            .await?;
        let mut changed = 0;
        for r in &rows {
            let id: String = r.get("message_id")?;
            let body = self.sealer.open(&id, r.get::<&str>("body")?)?;
            let Ok(mut doc) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            let Some(payload) = doc.get_mut("payload") else {
                continue;
            };
            if !reduce(r.get::<&str>("type")?, payload) {
                continue;
            }
            let text = serde_json::to_string(&doc).expect("a JSON value serializes");
            query("UPDATE inbox SET body = $1 WHERE seq = $2")
                .bind(self.sealer.seal(&id, &text))
                .bind(r.get::<i64>("seq")?)
                .execute(&mut tx)
                .await?;
            changed += 1;
        }
        query("DELETE FROM case_search WHERE case_ref = $1")
            .bind(case_ref)
            .execute(&mut tx)
            .await?;
        query(
            "INSERT INTO consent_withdrawals (case_ref, message_id, reduced_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(case_ref)
        .bind(message_id)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit(Script::new()).await?;
        Ok(changed)
    }

    /// When payloads received in `case_ref` were last reduced after a
    /// withdrawal of consent, if ever.
    pub async fn consent_reduced_at(&self, case_ref: &str) -> Result<Option<i64>, StoreError> {
        let row =
            query("SELECT MAX(reduced_at) AS at FROM consent_withdrawals WHERE case_ref = $1")
                .bind(case_ref)
                .fetch_one(&self.read)
                .await?;
        row.get::<Option<i64>>("at")
    }
}
