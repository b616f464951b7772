//! Migrations of the SQLite file, applied with rusqlite and recorded as
//! sqlx's migrator records them (`_sqlx_migrations`, same columns, same
//! checksums): a database that an earlier release migrated through sqlx
//! carries on from where it stands, and one this release made is the same
//! file sqlx's migrator would have made.

use rusqlite::{Connection, params};
use sqlx::migrate::Migrator;

use crate::store::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// Applies every migration not yet applied, each in its own transaction,
/// after checking that the applied ones are the ones this release ships.
pub(crate) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )?;
    let applied: Vec<(i64, bool, Vec<u8>)> = {
        let mut st = conn
            .prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?
    };
    if let Some((version, ..)) = applied.iter().find(|(_, ok, _)| !ok) {
        return Err(StoreError::Migrate(format!(
            "migration {version} failed part way in an earlier run; restore the database from a backup"
        )));
    }
    for (version, _, checksum) in &applied {
        match MIGRATOR.iter().find(|m| m.version == *version) {
            None => {
                return Err(StoreError::Migrate(format!(
                    "the database has migration {version}, which this release does not know: \
                     it was made by a newer release"
                )));
            }
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                return Err(StoreError::Migrate(format!(
                    "migration {version} ({}) differs from the one applied to the database",
                    m.description
                )));
            }
            Some(_) => {}
        }
    }
    for m in MIGRATOR.iter() {
        if applied.iter().any(|(v, ..)| *v == m.version) {
            continue;
        }
        let started = std::time::Instant::now();
        let tx = conn.transaction()?;
        tx.execute_batch(&m.sql).map_err(|e| {
            StoreError::Migrate(format!("migration {} ({}): {e}", m.version, m.description))
        })?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            params![
                m.version,
                m.description.as_ref(),
                m.checksum.as_ref(),
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}
