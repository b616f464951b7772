//! The embedded store's engine: SQLite through rusqlite, one thread owning
//! the write connection ([`writer`]) and a few read connections on threads
//! of their own ([`readers`]).

pub(crate) mod exec;
mod migrate;
pub(crate) mod readers;
pub(crate) mod writer;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::sql::{create_parent_dir, sqlite_path};

/// Read connections: enough for the API's reads beside the delivery
/// worker's, few enough to keep the file's handles and caches small.
const READERS: usize = 4;

/// Prepared statements kept per connection: the store's statements, and
/// the multi-row inserts of the group sizes that recur.
const STATEMENT_CACHE: usize = 256;

/// Settings of every connection (WAL is also recorded in the file).
const PRAGMAS: &str = "PRAGMA busy_timeout = 10000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; \
     PRAGMA temp_store = MEMORY;";

/// Opens (creating if needed) the file `url` names, migrates it, and starts
/// its writer and readers.
pub(crate) fn open(url: &str) -> Result<(writer::Writer, readers::Readers), StoreError> {
    let path = sqlite_path(url);
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        // Readers would each see a database of their own, and an outbox
        // that a restart empties is no outbox.
        return Err(StoreError::Url {
            url: url.to_string(),
            message: "an in-memory SQLite database would lose every message at a restart; \
                      name a file (sqlite://data/kh.db)"
                .to_string(),
        });
    }
    if url.contains("mode=ro") {
        return Err(StoreError::Url {
            url: url.to_string(),
            message: "the gateway writes its database; `mode=ro` cannot serve".to_string(),
        });
    }
    create_parent_dir(url);
    let mut write = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    write.execute_batch(PRAGMAS)?;
    write.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate::run(&mut write)?;
    let mut reads = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Read-write to share the WAL index, but refusing writes: every
        // write goes through the writer.
        conn.execute_batch(PRAGMAS)?;
        conn.execute_batch("PRAGMA query_only = ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        reads.push(conn);
    }
    let io = |e: std::io::Error| StoreError::Thread(e.to_string());
    Ok((
        writer::Writer::spawn(write).map_err(io)?,
        readers::Readers::spawn(reads).map_err(io)?,
    ))
}
