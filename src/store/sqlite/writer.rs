//! The one thread that writes the SQLite file. It owns the write
//! connection; callers send it jobs over a channel and await the answer, so
//! a transaction is one hand-off per script (its reads, then its writes
//! with the `COMMIT`) instead of one per statement, and nothing is copied
//! through a driver's generic layer on the way.
//!
//! A transaction spans jobs: the first begins it (`BEGIN IMMEDIATE`, the
//! write lock up front), the last commits it. [`super::super::tx::WriteTx`]
//! holds the writer's async lock from its first job to its last, so no other
//! caller's statements run inside it. A transaction given up before its
//! commit (an error, a cancelled caller) is rolled back here, at once or,
//! for a caller that vanished, by the [`Job::Abort`] its drop sends; either
//! way before the next transaction begins, since jobs run in order.
//!
//! Durability is set per transaction: `synchronous = FULL` for every commit
//! that answers a caller, `NORMAL` for the repeatable ones (claims,
//! deliveries the peer confirms again), whose commit the next durable one's
//! fsync covers, the WAL being written in order. The thread tracks the
//! setting and changes it only when the next transaction wants the other.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::{Mutex, oneshot};

use super::exec::{self, Stmt};
use crate::store::StoreError;
use crate::store::row::Done;

/// How a transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The commit is on disk before the job answers.
    Full,
    /// The commit may be lost to a crash of the machine, and done again.
    Relaxed,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "PRAGMA synchronous = FULL",
            Durability::Relaxed => "PRAGMA synchronous = NORMAL",
        }
    }
}

/// Where a job stands in its transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// The transaction's first job: begins it.
    Begin(Durability),
    /// A later job of a transaction begun before.
    Within,
}

pub(crate) type Reply = oneshot::Sender<Result<Vec<Done>, StoreError>>;

pub(crate) enum Job {
    Run {
        step: Step,
        statements: Vec<Stmt>,
        commit: bool,
        reply: Reply,
    },
    /// Rolls back a transaction left open (its caller gave up).
    Abort,
    /// Closes the connection; answered once it is closed.
    Close(oneshot::Sender<()>),
}

/// The handle to the writer thread; clones share the thread and its lock.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Held by a write transaction from its first job to its last.
    pub(crate) lock: Arc<Mutex<()>>,
}

impl Writer {
    /// Starts the thread on `conn` (opened, set up and migrated).
    pub(crate) fn spawn(conn: Connection) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, rx))?;
        Ok(Self {
            jobs,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// Sends a job; `Closed` when the thread is gone.
    pub(crate) fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| StoreError::Closed)
    }

    /// Runs `statements` as `step`, committing after them if `commit`.
    pub(crate) async fn run(
        &self,
        step: Step,
        statements: Vec<Stmt>,
        commit: bool,
    ) -> Result<Vec<Done>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run {
            step,
            statements,
            commit,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Closes the connection once every job sent before is done.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.send(Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn serve(conn: Connection, jobs: mpsc::Receiver<Job>) {
    // The setting the connection was opened with (`super::open`).
    let mut durability = Durability::Full;
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Run {
                step,
                statements,
                commit,
                reply,
            } => {
                let result = run(&conn, &mut durability, step, &statements, commit);
                let _ = reply.send(result);
            }
            Job::Abort => rollback_if_open(&conn),
            Job::Close(done) => {
                rollback_if_open(&conn);
                drop(conn);
                let _ = done.send(());
                return;
            }
        }
    }
}

fn rollback_if_open(conn: &Connection) {
    if !conn.is_autocommit() {
        // Nothing to roll back is an error too, and harmless.
        let _ = conn.execute_batch("ROLLBACK");
    }
}

fn set(conn: &Connection, now: &mut Durability, want: Durability) -> rusqlite::Result<()> {
    if *now != want {
        conn.execute_batch(want.pragma())?;
        *now = want;
    }
    Ok(())
}

fn run(
    conn: &Connection,
    durability: &mut Durability,
    step: Step,
    statements: &[Stmt],
    commit: bool,
) -> Result<Vec<Done>, StoreError> {
    match step {
        Step::Begin(want) => {
            // A transaction still open here was given up by a caller whose
            // abort has not arrived yet: it is over either way.
            rollback_if_open(conn);
            set(conn, durability, want)?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
        }
        Step::Within => {
            if conn.is_autocommit() {
                // Its transaction was rolled back (an earlier error): a
                // later statement must not run, and commit, on its own.
                return Err(StoreError::TransactionEnded);
            }
        }
    }
    let result = (|| {
        let mut done = Vec::with_capacity(statements.len());
        for stmt in statements {
            done.push(exec::run(conn, stmt)?);
        }
        if commit && !conn.is_autocommit() {
            conn.execute_batch("COMMIT")?;
        }
        Ok::<_, rusqlite::Error>(done)
    })();
    if result.is_err() {
        rollback_if_open(conn);
    }
    Ok(result?)
}
