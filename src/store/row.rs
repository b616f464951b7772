//! Rows as the store reads them, whichever database they came from: a
//! value per column, read by column name into a Rust type with a typed
//! error (never a panic) when the column is missing or holds another type.
//! Each table's row type maps its rows with a `from_row` of its own.

use std::sync::Arc;

use super::StoreError;

/// One column's value, as SQLite types it (PostgreSQL's `BIGINT` and `TEXT`,
/// the only types the schema uses, map onto `Int` and `Text`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// One row of a result, its column names shared by every row of it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Self {
        Self { columns, values }
    }

    /// The value of `column` as a `T`.
    pub(crate) fn get<'r, T: FromValue<'r>>(&'r self, column: &str) -> Result<T, StoreError> {
        let value = self.value(column)?;
        T::from_value(value).ok_or_else(|| StoreError::Row {
            column: column.to_string(),
            message: format!("expected {}, found {}", T::EXPECTED, value.kind()),
        })
    }

    /// The value of the first column (a `PRAGMA`).
    #[cfg(test)]
    pub(crate) fn first<'r, T: FromValue<'r>>(&'r self) -> Result<T, StoreError> {
        let name = self.columns.first().cloned().unwrap_or_default();
        self.get(&name)
    }

    fn value(&self, column: &str) -> Result<&Value, StoreError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Row {
                column: column.to_string(),
                message: "no such column in the result".to_string(),
            })
    }
}

/// A Rust type a column's value reads into.
pub(crate) trait FromValue<'r>: Sized {
    /// What the error says was expected.
    const EXPECTED: &'static str;
    fn from_value(v: &'r Value) -> Option<Self>;
}

impl FromValue<'_> for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue<'_> for bool {
    const EXPECTED: &'static str = "a boolean";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl FromValue<'_> for String {
    const EXPECTED: &'static str = "text";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<'r> FromValue<'r> for &'r str {
    const EXPECTED: &'static str = "text";
    fn from_value(v: &'r Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.as_str()),
            _ => None,
        }
    }
}

impl<'r> FromValue<'r> for &'r [u8] {
    const EXPECTED: &'static str = "a blob";
    fn from_value(v: &'r Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.as_slice()),
            _ => None,
        }
    }
}

impl<'r, T: FromValue<'r>> FromValue<'r> for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(v: &'r Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// What one statement did: the rows it returned and how many rows it
/// changed.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub rows: Vec<Row>,
    pub affected: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row::new(
            Arc::from(vec!["n".to_string(), "s".to_string(), "z".to_string()]),
            vec![Value::Int(7), Value::Text("queued".into()), Value::Null],
        )
    }

    #[test]
    fn values_read_into_their_types_and_the_wrong_type_is_an_error_naming_the_column() {
        let r = row();
        assert_eq!(r.get::<i64>("n").unwrap(), 7);
        assert_eq!(r.get::<&str>("s").unwrap(), "queued");
        assert_eq!(r.get::<Option<String>>("z").unwrap(), None);
        assert_eq!(r.get::<Option<i64>>("n").unwrap(), Some(7));
        let e = r.get::<i64>("s").unwrap_err().to_string();
        assert!(
            e.contains("`s`") && e.contains("expected an integer, found text"),
            "{e}"
        );
        let e = r.get::<String>("z").unwrap_err().to_string();
        assert!(e.contains("found NULL"), "{e}");
        let e = r.get::<i64>("missing").unwrap_err().to_string();
        assert!(e.contains("no such column"), "{e}");
        assert_eq!(r.first::<i64>().unwrap(), 7);
    }
}
