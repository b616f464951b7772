//! The case search index: keyed hashes of search terms (see
//! `domain::search`), each with its case, written in the transaction that
//! commits the message yielding them, and looked up by exact digest.

use super::*;

/// Adds `(case_ref, digest)` pairs, once each.
pub(super) fn push_search<'a>(
    script: &mut Script<'a>,
    backend: Backend,
    entries: Vec<(&'a str, &'a str)>,
) {
    if entries.is_empty() {
        return;
    }
    script.push(
        format!(
            "INSERT INTO case_search (case_ref, digest) VALUES {} ON CONFLICT DO NOTHING",
            values_of(backend, entries.len(), 2)
        ),
        entries
            .into_iter()
            .flat_map(|(case_ref, digest)| [Arg::Str(case_ref), Arg::Str(digest)]),
    );
}

impl Store {
    /// The keyed hash of a search term, under this node's search key.
    pub fn search_digest(&self, term: &str) -> String {
        self.sealer.search_digest(term)
    }

    /// Cases with a message that yielded `digest`, by reference, after
    /// `after`, at most `limit`; with `origin`, only cases of that
    /// country's nationals (`<HOST>-<ORIGIN>-...`).
    pub async fn cases_by_digest(
        &self,
        digest: &str,
        after: &str,
        origin: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        // Country codes are two capital letters: no LIKE wildcard in them.
        let pattern = origin.map_or_else(|| "%".to_string(), |cc| format!("__-{cc}-%"));
        let rows = query(
            "SELECT case_ref FROM case_search WHERE digest = $1 AND case_ref > $2 \
             AND case_ref LIKE $3 ORDER BY case_ref LIMIT $4",
        )
        .bind(digest)
        .bind(after)
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| r.get("case_ref")).collect()
    }

    /// Whether this node has any message of `case_ref`.
    pub async fn case_exists(&self, case_ref: &str) -> Result<bool, StoreError> {
        let row = query("SELECT COUNT(*) AS n FROM case_log WHERE case_ref = $1")
            .bind(case_ref)
            .fetch_one(&self.read)
            .await?;
        Ok(row.get::<i64>("n")? > 0)
    }
}
