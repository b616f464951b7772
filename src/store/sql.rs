//! SQL text helpers shared by every table: database URLs, placeholders
//! and multi-row `VALUES` lists in each backend's dialect.

use super::*;

/// Creates the directory of a SQLite file so a fresh checkout can start.
pub(super) fn create_parent_dir(url: &str) {
    let path = sqlite_path(url);
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
}

pub(super) fn sqlite_path(url: &str) -> &str {
    url.trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or("")
}

/// The URL without its password, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Placeholders for `n` parameters, numbered from 1, for the statements
/// that bind many (multi-row inserts, `IN` lists). SQLite gets anonymous
/// `?`, bound in order: a numbered `$n` is bound by looking up its name
/// (`sqlite::exec`), and SQLite finds a name by walking the list of names,
/// so `$n` costs O(n²) per statement (it was the writer thread's top
/// symbol at 1,700 parameters).
pub(super) fn placeholders(backend: Backend, n: usize) -> impl Iterator<Item = String> {
    (1..=n).map(move |i| match backend {
        Backend::Sqlite => "?".to_string(),
        Backend::Postgres => format!("${i}"),
    })
}

/// Placeholders for a multi-row `VALUES` list: `($1, .., $cols), (..)`.
/// One statement for many rows is one round trip (to SQLite's thread or to
/// the PostgreSQL server) instead of one per row, which is most of the cost
/// of a small write.
pub(super) fn values_of(backend: Backend, rows: usize, cols: usize) -> String {
    let all: Vec<String> = placeholders(backend, rows * cols).collect();
    all.chunks(cols.max(1))
        .map(|row| format!("({})", row.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Placeholders `$1, .., $n` (SQLite: `?`) for an `IN (..)` list, the
/// statement's only parameters.
pub(super) fn in_of(backend: Backend, n: usize) -> String {
    placeholders(backend, n).collect::<Vec<_>>().join(", ")
}

/// Numbered placeholders handed out in turn, for statements whose
/// conditions depend on which filters are given: `$2`, `$3`, … after the
/// statement's first `$1`.
pub(super) struct Numbered(usize);

impl Numbered {
    pub(super) fn after_first() -> Self {
        Self(1)
    }

    pub(super) fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}
