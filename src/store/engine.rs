//! Where the store's statements go: SQLite's writer thread and read
//! threads, or a PostgreSQL pool (instances and transactions write side by
//! side there, each on a connection of its own).

use sqlx::PgPool;

use super::StoreError;
use super::row::Done;
use super::sqlite;
use super::sqlite::exec::Stmt;

#[derive(Debug, Clone)]
pub(super) enum Writer {
    Sqlite(sqlite::writer::Writer),
    Postgres(PgPool),
}

impl Writer {
    pub(super) async fn close(&self) {
        match self {
            Writer::Sqlite(w) => w.close().await,
            Writer::Postgres(pool) => pool.close().await,
        }
    }
}

/// Where reads go; each read is one statement outside any transaction, so
/// it sees every commit made before it started.
#[derive(Debug, Clone)]
pub(super) enum Reader {
    Sqlite(sqlite::readers::Readers),
    Postgres(PgPool),
}

impl Reader {
    pub(super) async fn run(
        &self,
        sql: String,
        args: &[super::arg::Arg<'_>],
    ) -> Result<Done, StoreError> {
        match self {
            Reader::Sqlite(readers) => {
                readers
                    .run(Stmt {
                        sql,
                        args: args.iter().map(super::arg::Arg::value).collect(),
                    })
                    .await
            }
            Reader::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                super::postgres::run(&mut conn, &sql, args).await
            }
        }
    }
}
