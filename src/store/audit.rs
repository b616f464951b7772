//! The append-only, hash-chained audit log.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::row::Row;
use super::tx::{Arg, Script, WriteTx, query};
use super::{Store, StoreError};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited action.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub case_ref: Option<String>,
    pub message_id: Option<String>,
    pub result: String,
    /// The officer the caller acted for (`On-Behalf-Of`), as it was sent.
    pub officer: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub case_ref: Option<String>,
    pub message_id: Option<String>,
    pub result: String,
    /// The officer the caller acted for, if it named one.
    pub officer: Option<String>,
    /// The hash of the row before it in the whole chain.
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// What the row records, without its place in the chain.
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            at: self.at,
            actor: self.actor.clone(),
            role: self.role.clone(),
            action: self.action.clone(),
            case_ref: self.case_ref.clone(),
            message_id: self.message_id.clone(),
            result: self.result.clone(),
            officer: self.officer.clone(),
        }
    }
}

/// The hash of row `seq` recording `e` after a row whose hash is `prev`.
/// Public so that a copy of some rows (an evidence bundle) can be checked
/// without the database.
pub fn chain_hash(prev: &str, seq: i64, e: &AuditEntry) -> String {
    // Length-prefixed fields: no two different rows hash the same text.
    // The officer, a later field, is hashed only when there is one, after
    // the others: a row without one hashes as every row did before the
    // field existed, so a chain written before it still verifies, and a
    // row with one has a tenth part no row without one can match.
    let mut h = Sha256::new();
    let officer = e.officer.as_deref();
    for part in [
        prev,
        &seq.to_string(),
        &e.at.to_string(),
        &e.actor,
        &e.role,
        &e.action,
        e.case_ref.as_deref().unwrap_or("\u{0}"),
        e.message_id.as_deref().unwrap_or("\u{0}"),
        &e.result,
    ]
    .into_iter()
    .chain(officer)
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The read of the chain's last row ([`tail_of`] reads its answer).
pub(super) const TAIL_SQL: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

/// The chain's last row: its `seq` and hash (the genesis hash when empty).
pub(super) async fn tail(tx: &mut WriteTx) -> Result<(i64, String), StoreError> {
    tail_of(&query(TAIL_SQL).fetch_all(tx).await?)
}

/// The chain's last row from the rows of [`TAIL_SQL`].
pub(super) fn tail_of(rows: &[Row]) -> Result<(i64, String), StoreError> {
    Ok(match rows.first() {
        Some(r) => (r.get("seq")?, r.get("hash")?),
        None => (0, GENESIS.to_string()),
    })
}

impl AuditRow {
    fn from_row(r: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            seq: r.get("seq")?,
            at: r.get("at")?,
            actor: r.get("actor")?,
            role: r.get("role")?,
            action: r.get("action")?,
            case_ref: r.get("case_ref")?,
            message_id: r.get("message_id")?,
            result: r.get("result")?,
            prev_hash: r.get("prev_hash")?,
            officer: r.get("officer")?,
            hash: r.get("hash")?,
        })
    }
}

/// The insert of `entries`, chained to `tail` ([`tail`], read in the same
/// write transaction). The caller holds the audit lock (PostgreSQL; SQLite's
/// single writer is one), so the chain's last hash cannot change underneath.
pub(super) fn push_append<'a>(
    script: &mut Script<'a>,
    backend: super::Backend,
    tail: (i64, String),
    entries: &'a [AuditEntry],
) {
    if entries.is_empty() {
        return;
    }
    let (mut seq, mut prev) = tail;
    let mut args: Vec<Arg<'a>> = Vec::with_capacity(entries.len() * 11);
    for e in entries {
        seq += 1;
        let hash = chain_hash(&prev, seq, e);
        args.extend([
            Arg::Int(seq),
            Arg::Int(e.at),
            Arg::Str(&e.actor),
            Arg::Str(&e.role),
            Arg::Str(&e.action),
            Arg::from(&e.case_ref),
            Arg::from(&e.message_id),
            Arg::Str(&e.result),
            Arg::from(&e.officer),
            Arg::String(prev),
            Arg::String(hash.clone()),
        ]);
        prev = hash;
    }
    script.push(
        format!(
            "INSERT INTO audit (seq, at, actor, role, action, case_ref, message_id, result, officer, prev_hash, hash) VALUES {}",
            super::values_of(backend, entries.len(), 11)
        ),
        args,
    );
}

/// Which audit rows to read; `None` matches every row.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    pub case_ref: Option<&'a str>,
    /// Who acted: the principal's name (`actor`) or the officer id,
    /// whichever equals it exactly.
    pub actor: Option<&'a str>,
}

/// The read of [`Store::audit_rows_where`]: a condition only for what the
/// filter names, so that each can use its index (`audit_case`, and
/// `audit_actor` with `audit_officer` for the actor); a `$n IS NULL OR`
/// condition would make every query scan the whole log. Parameters: the
/// cursor, the case, the actor twice, the limit, the absent ones left out.
pub(super) fn rows_sql(filter: &AuditFilter<'_>) -> String {
    let mut n = super::sql::Numbered::after_first();
    let mut next = || n.next();
    let mut sql = String::from("SELECT * FROM audit WHERE seq > $1");
    if filter.case_ref.is_some() {
        sql.push_str(&format!(" AND case_ref = {}", next()));
    }
    if filter.actor.is_some() {
        sql.push_str(&format!(
            " AND (actor = {} OR officer = {})",
            next(),
            next()
        ));
    }
    sql.push_str(&format!(" ORDER BY seq LIMIT {}", next()));
    sql
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Intact { rows: i64 },
    Broken { seq: i64, reason: String },
}

impl Store {
    /// Appends entries to the audit log, chained to the last row.
    pub async fn audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = WriteTx::begin(&self.write, self.backend).await?;
        tx.lock_audit().await?;
        let tail = tail(&mut tx).await?;
        let mut script = Script::new();
        push_append(&mut script, self.backend, tail, entries);
        tx.commit(script).await?;
        Ok(())
    }

    /// Audit rows, optionally of one case, after `after_seq`.
    pub async fn audit_rows(
        &self,
        case_ref: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let filter = AuditFilter {
            case_ref,
            actor: None,
        };
        self.audit_rows_where(&filter, after_seq, limit).await
    }

    /// Audit rows that match `filter`, after `after_seq`.
    pub async fn audit_rows_where(
        &self,
        filter: &AuditFilter<'_>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut q = query(rows_sql(filter)).bind(after_seq);
        if let Some(case_ref) = filter.case_ref {
            q = q.bind(case_ref);
        }
        if let Some(actor) = filter.actor {
            q = q.bind(actor).bind(actor);
        }
        let rows = q.bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(AuditRow::from_row).collect()
    }

    /// Walks the whole chain and names the first row that does not fit.
    pub async fn verify_audit(&self) -> Result<Verified, StoreError> {
        let rows = query("SELECT * FROM audit ORDER BY seq")
            .fetch_all(&self.read)
            .await?;
        let mut prev = GENESIS.to_string();
        for (expected_seq, r) in (1i64..).zip(rows.iter()) {
            let row = AuditRow::from_row(r)?;
            let seq = row.seq;
            if seq != expected_seq {
                return Ok(Verified::Broken {
                    seq,
                    reason: format!("row {expected_seq} is missing"),
                });
            }
            let entry = row.entry();
            if row.prev_hash != prev {
                return Ok(Verified::Broken {
                    seq,
                    reason: "does not chain to the row before it".into(),
                });
            }
            let hash = chain_hash(&prev, seq, &entry);
            if row.hash != hash {
                return Ok(Verified::Broken {
                    seq,
                    reason: "its content does not match its hash".into(),
                });
            }
            prev = hash;
        }
        Ok(Verified::Intact {
            rows: rows.len() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(officer: Option<&str>) -> AuditEntry {
        AuditEntry {
            at: 1000,
            actor: "TH-case-system".into(),
            role: "caseworker".into(),
            action: "case.read".into(),
            case_ref: Some("TH-KH-2026-000001".into()),
            message_id: None,
            result: "ok".into(),
            officer: officer.map(str::to_string),
        }
    }

    #[test]
    fn the_officer_is_hashed_only_when_present() {
        // The hash this record had before officers were recorded.
        assert_eq!(
            chain_hash(GENESIS, 1, &entry(None)),
            "f4e679cf30e3b1bac865e9f1fe6828b1956a6a31ddd46b7f9f703c33a240053e"
        );
        let a = chain_hash(GENESIS, 1, &entry(Some("officer-1")));
        let b = chain_hash(GENESIS, 1, &entry(Some("officer-2")));
        assert_ne!(a, chain_hash(GENESIS, 1, &entry(None)));
        assert_ne!(a, b);
        // Moving text between the result and the officer changes the hash.
        let mut moved = entry(Some("1"));
        moved.result = "o".into();
        let mut joined = entry(None);
        joined.result = "o1".into();
        assert_ne!(
            chain_hash(GENESIS, 1, &moved),
            chain_hash(GENESIS, 1, &joined)
        );
    }
}
