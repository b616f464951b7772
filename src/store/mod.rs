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
//! On SQLite, one thread owns the write connection and runs whole
//! transactions ([`sqlite::writer`]); reads go to read connections on
//! threads of their own. On PostgreSQL, typed sqlx over a pool.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::domain::admission::{self, Refusal};
use crate::domain::lifecycle::{self, CaseMessage, CaseState};

mod arg;
pub mod audit;
mod cases;
mod claims;
mod engine;
mod facts;
mod group;
mod inbox;
pub mod lock;
mod outbox;
mod postgres;
pub mod retention;
mod row;
pub mod seal;
mod search;
mod sql;
mod sqlite;
pub mod timers;
mod tx;
mod withdrawal;

use std::sync::Arc;

use seal::{SealError, Sealer};

use engine::{Reader, Writer};
use row::Row;
use timers::{NewEvent, NewTimer, Side};
use tx::{Arg, Script, Target, WriteTx, query};

use cases::*;
pub use cases::{Direction, Exchanged};
pub use claims::{Claimed, Outcome};
pub use facts::Unfacted;
pub use inbox::{InboxRow, NewInbound, Received};
use outbox::*;
pub use outbox::{Enqueued, NewOutbound, OutState, OutboxRow};
pub use sql::redact_url;
use sql::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database (PostgreSQL): {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(String),
    /// A stored value that does not read as its column's type, or a
    /// state this release does not know: a file written by something else.
    #[error("stored column `{column}`: {message}")]
    Row { column: String, message: String },
    /// A row the store's own writes imply is not there.
    #[error("missing from the database: {0}")]
    Missing(&'static str),
    #[error("the database's writer is busy: no turn within 30 s")]
    Busy,
    /// A statement sent after its transaction was rolled back.
    #[error("the transaction had already been rolled back")]
    TransactionEnded,
    /// The error of a group commit, as each of its callers hears it.
    #[error("{0}")]
    Group(String),
    #[error("cannot start the database's threads: {0}")]
    Thread(String),
    #[error("bad database URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the store is shutting down")]
    Closed,
    /// Another process holds the SQLite file ([`lock::DatabaseLock`]).
    #[error(
        "the database {} is in use by another homeward process (pid {holder}, lock file {}): \
         one process per SQLite file; stop that one first, or use PostgreSQL for several instances",
        database.display(),
        lock.display()
    )]
    Locked {
        database: std::path::PathBuf,
        lock: std::path::PathBuf,
        holder: String,
    },
    #[error("cannot lock the database with {}: {source}", lock.display())]
    LockFile {
        lock: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
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

#[derive(Debug, Clone)]
pub struct Store {
    write: Writer,
    read: Reader,
    backend: Backend,
    /// How long a PostgreSQL claim keeps other instances off a message.
    lease_ms: i64,
    sealer: Arc<Sealer>,
    committer: group::Committer,
}

/// Default claim lease: well past one delivery attempt's timeout.
const DEFAULT_LEASE_MS: i64 = 30_000;

impl Store {
    /// Opens (creating if needed) the database named by `url` (`sqlite:` or
    /// `postgres://`) and runs its migrations.
    pub async fn open(url: &str, sealer: Sealer) -> Result<Self, StoreError> {
        let bad_url = |message: String| StoreError::Url {
            url: redact_url(url),
            message,
        };
        let backend = Backend::of_url(url)
            .ok_or_else(|| bad_url("the scheme must be `sqlite:` or `postgres://`".to_string()))?;
        let (write, read) = match backend {
            Backend::Sqlite => {
                let url = url.to_string();
                // Opening and migrating are blocking file work.
                let (write, read) = tokio::task::spawn_blocking(move || sqlite::open(&url))
                    .await
                    .map_err(|e| StoreError::Thread(e.to_string()))??;
                (Writer::Sqlite(write), Reader::Sqlite(read))
            }
            Backend::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(12)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect(url)
                    .await?;
                // Several instances may start at once: sqlx's migrator takes
                // an advisory lock, so they apply each migration once.
                sqlx::migrate!("src/store/migrations/postgres")
                    .run(&pool)
                    .await
                    .map_err(|e| StoreError::Migrate(e.to_string()))?;
                (Writer::Postgres(pool.clone()), Reader::Postgres(pool))
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
        self.write.close().await;
    }
}

#[cfg(test)]
mod tests;
