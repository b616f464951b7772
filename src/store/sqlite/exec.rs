//! Running one statement on a rusqlite connection: cached preparation,
//! parameters bound by position (`?`) or by number (`$n`), and the rows
//! read into [`Row`]s.

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

use crate::store::row::{Done, Row, Value};

/// A statement and its parameters, owned: it crosses to the thread that
/// holds the connection.
#[derive(Debug)]
pub(crate) struct Stmt {
    pub sql: String,
    pub args: Vec<Value>,
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        // The schema's text is UTF-8 (it came in as Rust strings); anything
        // else would be a file written by another program, kept as bytes
        // so the row's reader names the column instead of a panic here.
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Value::Text(s.to_string()),
            Err(_) => Value::Blob(t.to_vec()),
        },
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Runs `stmt` on `conn`.
pub(crate) fn run(conn: &Connection, stmt: &Stmt) -> rusqlite::Result<Done> {
    let mut st = conn.prepare_cached(&stmt.sql)?;
    let count = st.parameter_count();
    // `$n` names the nth argument wherever it appears (and may appear
    // twice); SQLite numbers parameters by first appearance, so a
    // numbered one is looked up by its name. `?` takes the next argument.
    let numbered = stmt.sql.contains('$');
    if !numbered && count != stmt.args.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            stmt.args.len(),
            count,
        ));
    }
    for i in 1..=count {
        let arg = if numbered {
            let n = st
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(i);
            stmt.args.get(n.wrapping_sub(1))
        } else {
            stmt.args.get(i - 1)
        };
        let Some(arg) = arg else {
            return Err(rusqlite::Error::InvalidParameterCount(
                stmt.args.len(),
                count,
            ));
        };
        st.raw_bind_parameter(i, arg)?;
    }
    let columns: Arc<[String]> = st.column_names().into_iter().map(String::from).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    {
        let mut raw = st.raw_query();
        while let Some(r) = raw.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(value_of(r.get_ref(i)?));
            }
            rows.push(Row::new(columns.clone(), values));
        }
    }
    // A statement that writes nothing leaves `changes` at the last write's
    // count: only a write's own count is its.
    let affected = if st.readonly() { 0 } else { conn.changes() };
    Ok(Done { rows, affected })
}
