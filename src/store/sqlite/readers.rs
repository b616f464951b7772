//! Read connections, each on a thread of its own, sharing one queue: a
//! read never waits for the writer (WAL lets readers and one writer work
//! side by side) nor for a tokio worker to give up its thread.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::exec::{self, Stmt};
use crate::store::StoreError;
use crate::store::row::Done;

struct Job {
    stmt: Stmt,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Readers {
    jobs: mpsc::Sender<Job>,
}

impl Readers {
    /// A thread for each of `conns`.
    pub(crate) fn spawn(conns: Vec<Connection>) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("sqlite-read-{i}"))
                .spawn(move || serve(conn, &rx))?;
        }
        Ok(Self { jobs })
    }

    pub(crate) async fn run(&self, stmt: Stmt) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { stmt, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn serve(conn: Connection, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // One thread waits on the queue at a time; the others wait for it
        // to take a job and let go.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = exec::run(&conn, &job.stmt).map_err(StoreError::from);
        let _ = job.reply.send(result);
    }
}
