//! The PostgreSQL engine: typed sqlx (`PgPool`, `PgConnection`), each
//! statement sent with its parameters bound as they are (no copy through a
//! generic driver), rows read into [`Row`]s by their column types.

use std::sync::Arc;

use futures_util::TryStreamExt;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Column, Either, Executor, PgConnection, Postgres, Row as _, TypeInfo};

use super::StoreError;
use super::arg::Arg;
use super::row::{Done, Row, Value};

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn bind<'q>(query: Query<'q>, arg: &'q Arg<'q>) -> Query<'q> {
    match arg {
        Arg::Str(v) => query.bind(*v),
        Arg::String(v) => query.bind(v.as_str()),
        Arg::OptStr(v) => query.bind(*v),
        Arg::Int(v) => query.bind(*v),
        Arg::OptInt(v) => query.bind(*v),
    }
}

/// Runs one statement on `conn`.
pub(super) async fn run(
    conn: &mut PgConnection,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<Done, StoreError> {
    let mut query = sqlx::query::<Postgres>(sql);
    for arg in args {
        query = bind(query, arg);
    }
    let mut done = Done::default();
    let mut columns: Option<Arc<[String]>> = None;
    let mut stream = conn.fetch_many(query);
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Left(result) => done.affected += result.rows_affected(),
            Either::Right(row) => {
                let names = columns.get_or_insert_with(|| {
                    row.columns().iter().map(|c| c.name().to_string()).collect()
                });
                done.rows.push(Row::new(names.clone(), values_of(&row)?));
            }
        }
    }
    Ok(done)
}

fn values_of(row: &PgRow) -> Result<Vec<Value>, StoreError> {
    row.columns()
        .iter()
        .map(|c| {
            let i = c.ordinal();
            let name = c.type_info().name();
            Ok(match name {
                "INT8" => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)?
                    .map(|v| Value::Int(v.into())),
                "INT2" => row
                    .try_get::<Option<i16>, _>(i)?
                    .map(|v| Value::Int(v.into())),
                "BOOL" => row
                    .try_get::<Option<bool>, _>(i)?
                    .map(|v| Value::Int(v.into())),
                "FLOAT8" => row.try_get::<Option<f64>, _>(i)?.map(Value::Real),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
                    row.try_get::<Option<String>, _>(i)?.map(Value::Text)
                }
                "BYTEA" => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Blob),
                other => {
                    return Err(StoreError::Row {
                        column: c.name().to_string(),
                        message: format!("PostgreSQL type {other} is not one the store reads"),
                    });
                }
            }
            .unwrap_or(Value::Null))
        })
        .collect()
}
