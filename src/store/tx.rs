//! Statements, their parameters, and write transactions that reach the
//! database in as few round trips as the engine allows.
//!
//! A [`Script`] is statements to run in order, each with its own
//! parameters (`?` in order, or `$n` by number). On SQLite a script is one
//! job for the writer thread: a transaction's reads go in one job (with its
//! `BEGIN`), its writes in another (with its `COMMIT`), whatever the number
//! of statements. On PostgreSQL the same script goes statement by
//! statement on the transaction's connection.
//!
//! A [`Query`] is one statement, run with `fetch_all`, `fetch_optional`,
//! `fetch_one` or `execute` on a [`Target`]: the store's readers or an open
//! [`WriteTx`].

use std::future::Future;

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use tokio::sync::OwnedMutexGuard;

pub(super) use super::arg::Arg;
use super::engine::{Reader, Writer};
use super::row::{Done, Row};
use super::sqlite::exec::Stmt;
use super::sqlite::writer::{self as sqlite_writer, Durability, Job, Step};
use super::{Backend, StoreError};

/// Statements to run in order, each with its parameters.
#[derive(Debug, Default)]
pub(super) struct Script<'a> {
    statements: Vec<(String, Vec<Arg<'a>>)>,
}

impl<'a> Script<'a> {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A script of one statement.
    pub(super) fn of(sql: String, args: impl IntoIterator<Item = Arg<'a>>) -> Self {
        let mut s = Self::new();
        s.push(sql, args);
        s
    }

    pub(super) fn push(&mut self, sql: String, args: impl IntoIterator<Item = Arg<'a>>) {
        self.statements.push((sql, args.into_iter().collect()));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    fn into_stmts(self) -> Vec<Stmt> {
        self.statements
            .into_iter()
            .map(|(sql, args)| Stmt {
                sql,
                args: args.into_iter().map(Arg::into_value).collect(),
            })
            .collect()
    }
}

/// One statement with its parameters.
#[derive(Debug)]
pub(super) struct Query<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

pub(super) fn query<'a>(sql: impl Into<String>) -> Query<'a> {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// What a [`Query`] runs on.
pub(super) trait Target: Send {
    fn done(self, q: Query<'_>) -> impl Future<Output = Result<Done, StoreError>> + Send;
}

impl Target for &Reader {
    async fn done(self, q: Query<'_>) -> Result<Done, StoreError> {
        self.run(q.sql, &q.args).await
    }
}

impl Target for &mut WriteTx {
    async fn done(self, q: Query<'_>) -> Result<Done, StoreError> {
        let mut sets = self.run_done(Script::of(q.sql, q.args), false).await?;
        Ok(sets.pop().unwrap_or_default())
    }
}

/// A statement on its own: a transaction of one statement, durable.
impl Target for &Writer {
    async fn done(self, q: Query<'_>) -> Result<Done, StoreError> {
        let mut tx = WriteTx::start(self, Durability::Full).await?;
        let mut sets = tx.run_done(Script::of(q.sql, q.args), true).await?;
        tx.open = false;
        Ok(sets.pop().unwrap_or_default())
    }
}

impl<'a> Query<'a> {
    pub(super) fn bind(mut self, arg: impl Into<Arg<'a>>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub(super) async fn fetch_all(self, on: impl Target) -> Result<Vec<Row>, StoreError> {
        Ok(on.done(self).await?.rows)
    }

    pub(super) async fn fetch_optional(self, on: impl Target) -> Result<Option<Row>, StoreError> {
        Ok(on.done(self).await?.rows.into_iter().next())
    }

    /// The first row; a statement that returns none is an error.
    pub(super) async fn fetch_one(self, on: impl Target) -> Result<Row, StoreError> {
        self.fetch_optional(on)
            .await?
            .ok_or(StoreError::Missing("the row the statement returns"))
    }

    /// How many rows the statement changed.
    pub(super) async fn execute(self, on: impl Target) -> Result<u64, StoreError> {
        Ok(on.done(self).await?.affected)
    }
}

/// How long a transaction waits for the writer before giving up: a stuck
/// holder then shows as errors, not silence.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

enum Conn {
    /// SQLite's writer thread, held (its lock) for the transaction.
    Sqlite {
        writer: sqlite_writer::Writer,
        _held: OwnedMutexGuard<()>,
    },
    Postgres(PoolConnection<Postgres>),
}

/// A write transaction. It ends with [`WriteTx::commit`]; dropped before
/// that (an error, a cancellation), it is rolled back: SQLite's writer
/// thread rolls it back before the next transaction begins, PostgreSQL's
/// connection is closed, which rolls it back.
pub(super) struct WriteTx {
    conn: Conn,
    /// Not begun yet: the first script begins it, with this durability.
    begin: Option<Durability>,
    /// A statement of the transaction has been sent and it is not over.
    open: bool,
}

impl WriteTx {
    /// A transaction whose commit is durable before it returns.
    pub(super) async fn begin(writer: &Writer, _backend: Backend) -> Result<Self, StoreError> {
        Self::start(writer, Durability::Full).await
    }

    /// A transaction whose commit need not wait for the disk: what it
    /// records can be lost to a crash of the machine and done again (a
    /// claim, a delivery the peer will confirm again). On SQLite it commits
    /// with `synchronous = NORMAL`, and the next durable commit's fsync
    /// covers it; on PostgreSQL with `synchronous_commit` off, which has the
    /// same effect.
    pub(super) async fn begin_relaxed(
        writer: &Writer,
        _backend: Backend,
    ) -> Result<Self, StoreError> {
        Self::start(writer, Durability::Relaxed).await
    }

    async fn start(writer: &Writer, durability: Durability) -> Result<Self, StoreError> {
        let conn = match writer {
            Writer::Sqlite(w) => {
                let held = tokio::time::timeout(WAIT, w.lock.clone().lock_owned())
                    .await
                    .map_err(|_| StoreError::Busy)?;
                Conn::Sqlite {
                    writer: w.clone(),
                    _held: held,
                }
            }
            Writer::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
        };
        Ok(Self {
            conn,
            begin: Some(durability),
            open: false,
        })
    }

    /// Takes the audit chain's lock (PostgreSQL; SQLite's single writer
    /// already serialises).
    pub(super) async fn lock_audit(&mut self) -> Result<(), StoreError> {
        if matches!(self.conn, Conn::Postgres(_)) {
            // The namespace is a constant of this file, written in: a bound
            // parameter would go as BIGINT, and the lock takes two INTEGERs.
            self.run(Script::of(
                format!(
                    "SELECT 1 AS locked FROM pg_advisory_xact_lock({}, 0)",
                    super::LOCK_AUDIT
                ),
                [],
            ))
            .await?;
        }
        Ok(())
    }

    /// Takes the locks of `cases`, in one order for every writer, so two
    /// instances writing overlapping cases cannot deadlock (PostgreSQL).
    pub(super) async fn lock_cases(&mut self, cases: &[&str]) -> Result<(), StoreError> {
        if !matches!(self.conn, Conn::Postgres(_)) {
            return Ok(());
        }
        let mut cases = cases.to_vec();
        cases.sort_unstable();
        cases.dedup();
        // One round trip for many cases (a batch of 500 took 500). The
        // locks are taken in the order the `VALUES` are scanned, which is
        // the sorted order given, the same for every writer.
        let mut script = Script::new();
        for chunk in cases.chunks(1000) {
            let sql = format!(
                "SELECT 1 AS locked FROM (VALUES {}) AS v(c), \
                 LATERAL pg_advisory_xact_lock({}, hashtext(v.c))",
                (1..=chunk.len())
                    .map(|i| format!("(${i}::text)"))
                    .collect::<Vec<_>>()
                    .join(", "),
                super::LOCK_CASE
            );
            script.push(sql, chunk.iter().map(|c| Arg::Str(c)));
        }
        if !script.is_empty() {
            self.run(script).await?;
        }
        Ok(())
    }

    /// Runs `script` inside the transaction; the rows its statements return.
    pub(super) async fn run(&mut self, script: Script<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(self.run_sets(script).await?.concat())
    }

    /// Runs `script` inside the transaction; the rows of each statement.
    pub(super) async fn run_sets(
        &mut self,
        script: Script<'_>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        Ok(self
            .run_done(script, false)
            .await?
            .into_iter()
            .map(|d| d.rows)
            .collect())
    }

    /// Runs `script` and commits, in one round trip on SQLite.
    pub(super) async fn commit(mut self, script: Script<'_>) -> Result<Vec<Row>, StoreError> {
        let done = self.run_done(script, true).await?;
        self.open = false;
        Ok(done.into_iter().flat_map(|d| d.rows).collect())
    }

    async fn run_done(
        &mut self,
        script: Script<'_>,
        commit: bool,
    ) -> Result<Vec<Done>, StoreError> {
        let begin = self.begin.take();
        self.open = true;
        match &mut self.conn {
            Conn::Sqlite { writer, .. } => {
                let step = begin.map_or(Step::Within, Step::Begin);
                writer.run(step, script.into_stmts(), commit).await
            }
            Conn::Postgres(conn) => {
                if let Some(durability) = begin {
                    sqlx::Executor::execute(&mut **conn, "BEGIN").await?;
                    if durability == Durability::Relaxed {
                        // Only this transaction; a later durable commit
                        // flushes it too.
                        sqlx::Executor::execute(&mut **conn, "SET LOCAL synchronous_commit TO OFF")
                            .await?;
                    }
                }
                let mut done = Vec::with_capacity(script.statements.len());
                for (sql, args) in &script.statements {
                    done.push(super::postgres::run(conn, sql, args).await?);
                }
                if commit {
                    sqlx::Executor::execute(&mut **conn, "COMMIT").await?;
                }
                Ok(done)
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        match &mut self.conn {
            // Before the lock goes (the fields drop after this): the abort
            // runs before any later transaction's first job.
            Conn::Sqlite { writer, .. } => {
                let _ = writer.send(Job::Abort);
            }
            Conn::Postgres(conn) => conn.close_on_drop(),
        }
    }
}
