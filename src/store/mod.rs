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
mod cases;
mod claims;
mod facts;
mod group;
mod inbox;
pub mod lock;
mod outbox;
pub mod retention;
pub mod seal;
mod search;
mod sql;
pub mod timers;
mod tx;
mod withdrawal;
mod writer;

use std::sync::Arc;

use seal::{SealError, Sealer};

use timers::{NewEvent, NewTimer, Side};
use tx::{Arg, Script, WriteTx};
use writer::Writer;

use cases::*;
pub use cases::{Direction, Exchanged};
pub use claims::{Claimed, Outcome};
pub use facts::Unfacted;
use inbox::*;
pub use inbox::{InboxRow, NewInbound, Received};
use outbox::*;
pub use outbox::{Enqueued, NewOutbound, OutState, OutboxRow};
pub use sql::redact_url;
use sql::*;

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
}

#[cfg(test)]
mod tests;
