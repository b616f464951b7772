//! Write transactions that reach the database in as few round trips as the
//! backend allows.
//!
//! On SQLite every statement is a hand-off from tokio to the connection's
//! thread and back. With one submitter waiting for each `202`, those
//! hand-offs, not the disk, bounded the rate: a submission took nine. But
//! SQLite runs a string of statements in one hand-off, so a [`WriteTx`]
//! sends its `BEGIN` with its first statements (every read the writes
//! depend on, each statement's rows kept apart) and its writes with its
//! `COMMIT`: a submission or a receipt is two hand-offs. PostgreSQL takes
//! one statement per parameterised query, so there the same [`Script`] goes
//! statement by statement.
//!
//! sqlx-sqlite runs every statement of a query string, each with its share
//! of the parameters; upstream calls that behaviour deprecated
//! (launchbadge/sqlx#3108) but keeps it in 0.8. Should it go, SQLite's
//! scripts go statement by statement too, and only the round trips return.

use futures_util::TryStreamExt;
use sqlx::Either;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor};

use super::writer::{Conn, Writer};
use super::{Backend, StoreError};

/// A value bound to a placeholder of a [`Script`].
#[derive(Debug)]
pub(super) enum Arg<'a> {
    Str(&'a str),
    String(String),
    OptStr(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Str(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Str(v)
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::String(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptStr(v)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptStr(v.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

fn bind<'q>(query: Query<'q>, arg: Arg<'q>) -> Query<'q> {
    match arg {
        Arg::Str(v) => query.bind(v),
        Arg::String(v) => query.bind(v),
        Arg::OptStr(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::OptInt(v) => query.bind(v),
    }
}

/// Statements to run in order, each with its parameters. Each statement
/// numbers its placeholders as if alone ([`super::placeholders`]): on
/// SQLite that is anonymous `?`, which in one string of statements carries
/// on from the statement before. A `$n` would count from the start of the
/// string, so only a script's first statement may use one.
#[derive(Debug, Default)]
pub(super) struct Script<'a> {
    statements: Vec<(String, usize)>,
    args: Vec<Arg<'a>>,
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
        let before = self.args.len();
        self.args.extend(args);
        self.statements.push((sql, self.args.len() - before));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs the statements on `conn`, SQLite's as one string between
    /// `prefix` and `suffix` (statements without parameters), and returns
    /// the rows of each statement of the script, in order: one set per
    /// statement, so reads whose answers decide the writes can share one
    /// round trip.
    async fn run(
        self,
        conn: &mut AnyConnection,
        backend: Backend,
        prefix: &[&str],
        suffix: &[&str],
    ) -> Result<Vec<Vec<AnyRow>>, sqlx::Error> {
        match backend {
            Backend::Sqlite => {
                let sql = prefix
                    .iter()
                    .copied()
                    .chain(self.statements.iter().map(|(sql, _)| sql.as_str()))
                    .chain(suffix.iter().copied())
                    .collect::<Vec<_>>()
                    .join(";\n");
                if sql.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::query(&sql);
                for arg in self.args {
                    query = bind(query, arg);
                }
                // sqlx-sqlite ends every statement of the string, rows or
                // none, with its result: that is where one set ends. (The
                // behaviour the module doc names; `Query::fetch_many` is
                // marked deprecated for it, the executor's is the same call.)
                let mut sets = Vec::with_capacity(prefix.len() + self.statements.len());
                let mut rows = Vec::new();
                let mut stream = conn.fetch_many(query);
                while let Some(item) = stream.try_next().await? {
                    match item {
                        Either::Left(_) => sets.push(std::mem::take(&mut rows)),
                        Either::Right(row) => rows.push(row),
                    }
                }
                drop(stream);
                // One result per statement sent, or the sets would not line
                // up with the statements (a statement holding a `;`, say).
                let sent = prefix.len() + self.statements.len() + suffix.len();
                if sets.len() != sent {
                    return Err(sqlx::Error::Protocol(format!(
                        "{sent} statements gave {} results",
                        sets.len()
                    )));
                }
                sets.truncate(prefix.len() + self.statements.len());
                sets.drain(..prefix.len());
                Ok(sets)
            }
            Backend::Postgres => {
                for sql in prefix {
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
                let mut sets = Vec::with_capacity(self.statements.len());
                let mut args = self.args.into_iter();
                for (sql, n) in &self.statements {
                    let mut query = sqlx::query(sql);
                    for arg in args.by_ref().take(*n) {
                        query = bind(query, arg);
                    }
                    sets.push(query.fetch_all(&mut *conn).await?);
                }
                for sql in suffix {
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
                Ok(sets)
            }
        }
    }
}

/// A write transaction on the writer connection. It ends with
/// [`WriteTx::commit`]; dropped before that (an error, a cancellation), it
/// gives the connection up ([`Conn::discard`]): PostgreSQL's is closed,
/// which rolls the transaction back, and SQLite's is rolled back and set
/// back to `synchronous = FULL` before anything else runs on it, so no
/// later commit can go without its fsync.
pub(super) struct WriteTx {
    conn: Conn,
    backend: Backend,
    /// Statements that open the transaction, not sent yet: on SQLite they
    /// go with the first statements of the transaction.
    begin: Option<&'static [&'static str]>,
    /// Statements that end it, after `COMMIT`.
    end: &'static [&'static str],
    /// A statement of the transaction has been sent and it is not over.
    open: bool,
}

impl WriteTx {
    /// A transaction whose commit is durable before it returns.
    pub(super) async fn begin(writer: &Writer, backend: Backend) -> Result<Self, StoreError> {
        let begin: &'static [&'static str] = match backend {
            // The writer's lock up front: a deferred BEGIN would start as a
            // reader and upgrade at its first write.
            Backend::Sqlite => &["BEGIN IMMEDIATE"],
            Backend::Postgres => &["BEGIN"],
        };
        Ok(Self {
            conn: writer.acquire().await?,
            backend,
            begin: Some(begin),
            end: &[],
            open: false,
        })
    }

    /// A transaction whose commit need not wait for the disk: what it
    /// records can be lost to a crash of the machine and done again (a
    /// claim, a delivery the peer will confirm again). On SQLite it commits
    /// with `synchronous = NORMAL`, and the next durable commit's fsync
    /// covers it, the WAL being written in order; the connection is back to
    /// FULL in the same round trip as the `COMMIT`. On PostgreSQL it commits
    /// with `synchronous_commit` off, which has the same effect.
    pub(super) async fn begin_relaxed(
        writer: &Writer,
        backend: Backend,
    ) -> Result<Self, StoreError> {
        let mut tx = Self::begin(writer, backend).await?;
        match backend {
            Backend::Sqlite => {
                tx.begin = Some(&["PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE"]);
                tx.end = &["PRAGMA synchronous = FULL"];
            }
            // Only this transaction; a later durable commit flushes it too.
            Backend::Postgres => {
                tx.begin = Some(&["BEGIN", "SET LOCAL synchronous_commit TO OFF"]);
            }
        }
        Ok(tx)
    }

    /// The connection, for statements whose results decide the next ones.
    /// Sends a pending `BEGIN` first (its own round trip on SQLite: start a
    /// transaction with [`WriteTx::run`] where the first statement allows).
    pub(super) async fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if self.begin.is_some() {
            self.run(Script::new()).await?;
        }
        Ok(&mut *self.conn)
    }

    /// Takes the audit chain's lock (PostgreSQL; SQLite's single writer
    /// already serialises).
    pub(super) async fn lock_audit(&mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            super::lock_audit(self.conn().await?, Backend::Postgres).await?;
        }
        Ok(())
    }

    /// Takes the locks of `cases`, in one order for every writer, so two
    /// instances writing overlapping cases cannot deadlock (PostgreSQL).
    pub(super) async fn lock_cases(&mut self, cases: &[&str]) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            let mut cases = cases.to_vec();
            cases.sort_unstable();
            cases.dedup();
            // One round trip for many cases (a batch of 500 took 500). The
            // locks are taken in the order the `VALUES` are scanned, which is
            // the sorted order given, the same for every writer.
            for chunk in cases.chunks(1000) {
                let sql = format!(
                    "SELECT 1 AS locked FROM (VALUES {}) AS v(c), \
                     LATERAL pg_advisory_xact_lock($1, hashtext(v.c))",
                    (2..chunk.len() + 2)
                        .map(|i| format!("(${i}::text)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut query = sqlx::query(&sql).bind(super::LOCK_CASE);
                for case_ref in chunk {
                    query = query.bind(*case_ref);
                }
                query.fetch_all(self.conn().await?).await?;
            }
        }
        Ok(())
    }

    /// Runs `script` inside the transaction; the rows its statements return.
    pub(super) async fn run(&mut self, script: Script<'_>) -> Result<Vec<AnyRow>, StoreError> {
        Ok(self.run_sets(script).await?.concat())
    }

    /// Runs `script` inside the transaction; the rows of each statement.
    pub(super) async fn run_sets(
        &mut self,
        script: Script<'_>,
    ) -> Result<Vec<Vec<AnyRow>>, StoreError> {
        let begin = self.begin.take().unwrap_or(&[]);
        self.open = true;
        Ok(script.run(&mut self.conn, self.backend, begin, &[]).await?)
    }

    /// Runs `script` and commits, in one round trip on SQLite.
    pub(super) async fn commit(mut self, script: Script<'_>) -> Result<Vec<AnyRow>, StoreError> {
        let begin = self.begin.take().unwrap_or(&[]);
        let end: Vec<&str> = std::iter::once("COMMIT")
            .chain(self.end.iter().copied())
            .collect();
        self.open = true;
        let rows = script
            .run(&mut self.conn, self.backend, begin, &end)
            .await?
            .concat();
        self.open = false;
        Ok(rows)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.discard();
        }
    }
}
