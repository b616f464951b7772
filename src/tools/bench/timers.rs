//! `homeward bench timers`: shows
//! that the timer scheduler's cost per wake-up does not grow with the
//! number of open timers (both of its queries use the `next_event_at`
//! index).

use std::time::Instant;

use serde_json::{Value, json};

use crate::app::timers::decide;
use crate::store::Store;
use crate::store::timers::{NewTimer, Side, TimerRow};

use super::procs::*;

const REMINDERS: &[f64] = &[0.5, 0.8];

fn timer(i: usize, now: i64) -> NewTimer {
    // Due times spread over the coming 42 days, none due now.
    let started_at = now - 1000;
    let due_at = now + 60_000 + (i as i64 * 7919) % (42 * 86_400_000);
    NewTimer {
        case_ref: format!("TH-KH-2026-{:06}", i % 1_000_000),
        message_id: format!("bench-{i}"),
        message_type: "family-tracing.request".into(),
        expected_type: "family-tracing.result".into(),
        side: if i.is_multiple_of(2) {
            Side::AnswerDue
        } else {
            Side::AwaitingAnswer
        },
        peer: "TH".into(),
        agreement: "kh-th".into(),
        started_at,
        due_at,
        first_event_at: crate::domain::deadline::first_event(started_at, due_at, REMINDERS),
    }
}

/// One scheduler wake-up as the gateway does it: fire what is due, then ask
/// for the next due time. Returns the microseconds it took.
async fn wake_up(store: &Store, now: i64) -> Result<f64, crate::store::StoreError> {
    let start = Instant::now();
    let due = store.due_timers(now, 500).await?;
    let firings: Vec<(TimerRow, _)> = due
        .into_iter()
        .filter_map(|t| decide(&t, now, REMINDERS).map(|f| (t, f)))
        .collect();
    if !firings.is_empty() {
        store.apply_firings(&firings).await?;
    }
    let _next = store.next_timer_event().await?;
    Ok(start.elapsed().as_secs_f64() * 1e6)
}

/// Measures the median wake-up cost with `sizes` open timers, each wake-up
/// firing exactly one due timer.
pub async fn timers(sizes: &[usize], wakeups: usize) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        let store = Store::open(
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
            crate::store::seal::Sealer::ephemeral(),
        )
        .await?;
        let now = crate::clock::unix_ms(time::OffsetDateTime::now_utc());
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<NewTimer> = chunk.iter().map(|i| timer(*i, now)).collect();
            store.insert_timers(&batch).await?;
        }
        // One timer per wake-up comes due: they are inserted due in the past.
        let due: Vec<NewTimer> = (0..wakeups)
            .map(|k| {
                let mut t = timer(n + k, now);
                t.started_at = now - 10_000;
                t.due_at = now + 3_600_000;
                t.first_event_at = Some(now - 5_000 + k as i64);
                t
            })
            .collect();
        store.insert_timers(&due).await?;
        let mut samples = Vec::with_capacity(wakeups);
        for _ in 0..wakeups {
            samples.push(wake_up(&store, now).await?);
        }
        let idle: Vec<f64> = {
            let mut v = Vec::new();
            for _ in 0..wakeups {
                v.push(wake_up(&store, now).await?);
            }
            v
        };
        store.close().await;
        results.push(json!({
            "open_timers": n,
            "median_us_per_wakeup_firing_one": median(samples),
            "median_us_per_idle_wakeup": median(idle),
        }));
    }
    let first = results
        .first()
        .and_then(|r| r["median_us_per_wakeup_firing_one"].as_f64())
        .unwrap_or(1.0);
    let last = results
        .last()
        .and_then(|r| r["median_us_per_wakeup_firing_one"].as_f64())
        .unwrap_or(1.0);
    Ok(json!({
        "benchmark": "timer scheduler wake-up",
        "results": results,
        "ratio_largest_to_smallest": last / first,
    }))
}
