//! A value bound to a statement's placeholder, borrowed where it can be:
//! PostgreSQL binds it as it is, SQLite's threads take it owned.

use super::row::Value;

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(super) enum Arg<'a> {
    Str(&'a str),
    String(String),
    OptStr(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

impl Arg<'_> {
    /// The value, owned (it crosses to SQLite's threads).
    pub(super) fn value(&self) -> Value {
        match self {
            Arg::Str(s) => Value::Text((*s).to_string()),
            Arg::String(s) => Value::Text(s.clone()),
            Arg::OptStr(s) => s.map_or(Value::Null, |s| Value::Text(s.to_string())),
            Arg::Int(i) => Value::Int(*i),
            Arg::OptInt(i) => i.map_or(Value::Null, Value::Int),
        }
    }

    pub(super) fn into_value(self) -> Value {
        match self {
            Arg::String(s) => Value::Text(s),
            other => other.value(),
        }
    }
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

impl From<&i64> for Arg<'_> {
    fn from(v: &i64) -> Self {
        Arg::Int(*v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
