//! The connection every write goes through.
//!
//! On SQLite that is one connection, held here rather than in a pool: a
//! sqlx pool checks each connection that comes back to it with a round trip
//! to the connection's thread (a ping on release), and with a single writer
//! every transaction waited for the previous one's check before it could
//! start. PostgreSQL keeps its pool: instances and transactions write side
//! by side there, each on a connection of its own.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::StoreError;

#[derive(Debug, Clone)]
pub(super) enum Writer {
    /// SQLite's one writer connection (`None` once closed).
    Held(Arc<Mutex<Held>>),
    Pool(AnyPool),
}

#[derive(Debug)]
pub(super) struct Held {
    conn: Option<AnyConnection>,
    /// A transaction was cut short on it (an error, a cancellation): roll
    /// it back, and back to durable commits, before the next use.
    dirty: bool,
    /// Where to open a new connection if that reset fails (the
    /// connection's thread is gone): a pool would have replaced it too.
    url: String,
}

/// How long a writer waits for the connection before giving up, as a
/// pool's acquire would: a stuck holder then shows as errors, not silence.
const WAIT: Duration = Duration::from_secs(30);

/// A writer connection in use.
pub(super) enum Conn {
    Held(OwnedMutexGuard<Held>),
    Pooled(PoolConnection<Any>),
}

impl Writer {
    /// SQLite's writer, on `conn`, opened from `url`.
    pub(super) fn held(conn: AnyConnection, url: String) -> Self {
        Writer::Held(Arc::new(Mutex::new(Held {
            conn: Some(conn),
            dirty: false,
            url,
        })))
    }

    /// The writer connection, once the last holder is done with it.
    pub(super) async fn acquire(&self) -> Result<Conn, StoreError> {
        match self {
            Writer::Pool(pool) => Ok(Conn::Pooled(pool.acquire().await?)),
            Writer::Held(held) => {
                let mut guard = tokio::time::timeout(WAIT, held.clone().lock_owned())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?;
                let Held { conn, dirty, url } = &mut *guard;
                let Some(open) = conn.as_mut() else {
                    return Err(StoreError::Closed);
                };
                if *dirty {
                    // Nothing to roll back is an error too, and harmless.
                    let _ = open.execute("ROLLBACK").await;
                    if open.execute("PRAGMA synchronous = FULL").await.is_err() {
                        // The connection itself is broken: a new one.
                        let mut fresh =
                            <AnyConnection as sqlx::Connection>::connect(url.as_str()).await?;
                        super::sqlite_pragmas(&mut fresh).await?;
                        *conn = Some(fresh);
                    }
                    *dirty = false;
                }
                Ok(Conn::Held(guard))
            }
        }
    }

    pub(super) async fn close(&self) {
        match self {
            Writer::Pool(pool) => pool.close().await,
            Writer::Held(held) => {
                if let Some(conn) = held.lock().await.conn.take() {
                    let _ = sqlx::Connection::close(conn).await;
                }
            }
        }
    }
}

impl Conn {
    /// Given up in the middle of a transaction: the pool's connection is
    /// closed (which rolls back), the held one reset before its next use.
    pub(super) fn discard(&mut self) {
        match self {
            Conn::Held(guard) => guard.dirty = true,
            Conn::Pooled(conn) => conn.close_on_drop(),
        }
    }
}

impl Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            // `acquire` hands out only a guard whose connection is there.
            Conn::Held(guard) => guard.conn.as_ref().expect("an open writer connection"),
            Conn::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Held(guard) => guard.conn.as_mut().expect("an open writer connection"),
            Conn::Pooled(conn) => conn,
        }
    }
}
