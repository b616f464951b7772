//! The statistics service: counts tables from the facts store, and
//! back-fills the facts of messages stored before facts were kept.

use serde_json::Value;
use tracing::{info, warn};

use crate::domain::facts;
use crate::domain::message::Envelope;
use crate::domain::statistics::{self, Durations, Query, Table};
use crate::store::{Store, StoreError};

/// Counts one table.
pub async fn table(store: &Store, query: &Query) -> Result<Table, StoreError> {
    let span = query.span_ms();
    let facts = store.facts_of_period(span.0, span.1, None).await?;
    let items = statistics::items(query.counted, &facts, span);
    Ok(statistics::table(query, &items))
}

/// The duration figures of a period.
pub async fn timings(store: &Store, query: &Query) -> Result<Vec<Durations>, StoreError> {
    let span = query.span_ms();
    let facts = store.facts_of_period(span.0, span.1, None).await?;
    Ok(statistics::timings(&facts, span, query.k))
}

/// Messages read per round of the back-fill.
const BACKFILL_PAGE: i64 = 500;

/// Extracts and stores the facts of every stored message that has none
/// (messages from before the facts table, or whose facts were lost). Runs
/// at start, before the gateway serves; how many messages it filled.
///
/// A purged case keeps a skeleton of each body, which still yields what
/// it holds; a body that is no envelope at all is skipped, named in the log
/// by message id.
pub async fn backfill(store: &Store) -> Result<usize, StoreError> {
    let mut after = 0;
    let mut filled = 0;
    loop {
        let page = store.messages_without_facts(after, BACKFILL_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        let mut found = Vec::new();
        for m in &page {
            let envelope = m
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|mut v| {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("purged_at");
                    }
                    serde_json::from_value::<Envelope>(v).ok()
                });
            match envelope {
                Some(e) => {
                    found.extend(facts::extract(&e));
                    filled += 1;
                }
                None => {
                    warn!(message_id = %m.message_id, "no facts: the stored body is not an envelope")
                }
            }
        }
        store.add_facts(&found).await?;
    }
    if filled > 0 {
        info!(messages = filled, "facts back-filled for the statistics");
    }
    Ok(filled)
}
