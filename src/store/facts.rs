//! The de-identified facts table (`case_facts`, see `domain::facts`):
//! written with the message that yields them, read by period for the
//! statistics and the reconciliation, and back-filled for messages stored
//! before the table existed.

use crate::domain::facts::Fact;

use super::*;

const FACT_COLUMNS: &str = "message_id, person, case_ref, corridor, type, schema_version, at, \
     sex, age_band, minor, sector, recruitment_channel, return_channel, gate, outcome, status";

/// Rows per statement: sixteen parameters each, well under SQLite's limit.
const ROWS_PER_INSERT: usize = 500;

/// Adds `facts`, once each (a replayed message adds nothing).
pub(super) fn push_facts<'a>(
    script: &mut Script<'a>,
    backend: Backend,
    facts: impl IntoIterator<Item = &'a Fact>,
) {
    let facts: Vec<&Fact> = facts.into_iter().collect();
    for chunk in facts.chunks(ROWS_PER_INSERT) {
        script.push(
            format!(
                "INSERT INTO case_facts ({FACT_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
                values_of(backend, chunk.len(), 16)
            ),
            chunk.iter().flat_map(|f| {
                [
                    Arg::from(&f.message_id),
                    Arg::from(&f.person),
                    Arg::from(&f.case_ref),
                    Arg::from(&f.corridor),
                    Arg::from(&f.message_type),
                    Arg::Int(i64::from(f.schema_version)),
                    Arg::Int(f.at),
                    Arg::from(&f.sex),
                    Arg::from(&f.age_band),
                    Arg::from(&f.minor),
                    Arg::from(&f.sector),
                    Arg::from(&f.recruitment_channel),
                    Arg::from(&f.return_channel),
                    Arg::from(&f.gate),
                    Arg::from(&f.outcome),
                    Arg::from(&f.status),
                ]
            }),
        );
    }
}

fn fact_of(r: &Row) -> Result<Fact, StoreError> {
    let opt = |c: &str| r.get::<Option<String>>(c);
    let version: i64 = r.get("schema_version")?;
    Ok(Fact {
        message_id: r.get("message_id")?,
        person: r.get("person")?,
        case_ref: r.get("case_ref")?,
        corridor: r.get("corridor")?,
        message_type: r.get("type")?,
        schema_version: u32::try_from(version).map_err(|_| StoreError::Row {
            column: "schema_version".to_string(),
            message: format!("{version} is not a schema version"),
        })?,
        at: r.get("at")?,
        sex: opt("sex")?,
        age_band: opt("age_band")?,
        minor: opt("minor")?,
        sector: opt("sector")?,
        recruitment_channel: opt("recruitment_channel")?,
        return_channel: opt("return_channel")?,
        gate: opt("gate")?,
        outcome: opt("outcome")?,
        status: opt("status")?,
    })
}

/// The read of [`Store::facts_of_period`]: the cases with a fact in the
/// period (by `case_facts_at`), then every fact of those (by the key).
pub(super) fn facts_of_period_sql() -> String {
    format!(
        "SELECT {FACT_COLUMNS} FROM case_facts WHERE case_ref IN \
         (SELECT case_ref FROM case_facts WHERE at >= $1 AND at < $2) \
         AND ($3 = '' OR corridor = $4) ORDER BY case_ref, at, message_id, person"
    )
}

/// A stored message whose facts are missing, with its (opened) body.
#[derive(Debug)]
pub struct Unfacted {
    pub seq: i64,
    pub message_id: String,
    pub body: Option<String>,
}

impl Store {
    /// Every fact of every case with a fact in `[start, end)`, optionally
    /// of one corridor: the counted facts and what resolves them (a
    /// returnee's sex is in the case's request, maybe of an earlier year).
    pub async fn facts_of_period(
        &self,
        start: i64,
        end: i64,
        corridor: Option<&str>,
    ) -> Result<Vec<Fact>, StoreError> {
        let rows = query(facts_of_period_sql())
            .bind(start)
            .bind(end)
            .bind(corridor.unwrap_or(""))
            .bind(corridor.unwrap_or(""))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(fact_of).collect()
    }

    /// Messages in the case log after `after_seq` with no fact of their
    /// own, oldest first, at most `limit`.
    pub async fn messages_without_facts(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Unfacted>, StoreError> {
        let rows = query(format!(
            "SELECT l.seq, l.message_id, COALESCE(ob.body, i.body) AS body \
             FROM {} WHERE l.seq > $1 AND NOT EXISTS \
             (SELECT 1 FROM case_facts f WHERE f.case_ref = l.case_ref \
             AND f.message_id = l.message_id AND f.person = '') \
             ORDER BY l.seq LIMIT $2",
            super::cases::LOGGED_MESSAGES
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let message_id: String = r.get("message_id")?;
                let body = r
                    .get::<Option<&str>>("body")?
                    .map(|sealed| self.sealer.open(&message_id, sealed))
                    .transpose()?;
                Ok(Unfacted {
                    seq: r.get("seq")?,
                    message_id,
                    body,
                })
            })
            .collect()
    }

    /// Stores facts outside a message's own commit (the back-fill).
    pub async fn add_facts(&self, facts: &[Fact]) -> Result<(), StoreError> {
        if facts.is_empty() {
            return Ok(());
        }
        let tx = WriteTx::begin(&self.write, self.backend).await?;
        let mut script = Script::new();
        push_facts(&mut script, self.backend, facts);
        tx.commit(script).await?;
        Ok(())
    }
}
