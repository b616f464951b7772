//! Acknowledgement deadlines and SLA timers. When a message that expects an
//! answer (per its agreement) is delivered, both gateways open a timer: the
//! sender's `awaiting_answer` and the receiver's `answer_due`, both from the
//! receipt time and with the same due time (the receiver computes it in its
//! own calendar and states it in the receipt). The expected answer closes
//! them; reminders fire at fractions of the deadline and a breach at the
//! deadline, each written to the case, logged, counted, and sent to the
//! operator webhook. Timers live in the database; one task sleeps until the
//! next event.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::node::Node;
pub use super::wake::TimerWake;
use crate::domain::deadline::next_event;
use crate::store::StoreError;
use crate::store::timers::{Firing, NewEvent, TimerRow};

/// Longest the scheduler sleeps without looking (guards against a missed wake-up).
pub(super) const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Events handled per scheduler step.
const BATCH: i64 = 500;

/// What a timer does at `now`: the latest event that has come due. Stale
/// reminders are skipped when a later event is also due (after downtime,
/// one breach beats a burst of old reminders).
pub fn decide(t: &TimerRow, now: i64, reminders: &[f64]) -> Option<Firing> {
    if t.state != "open" || t.next_event_at.is_none_or(|at| at > now) {
        return None;
    }
    let detail_base = json!({
        "timer_id": t.id,
        "side": t.side,
        "message_type": t.message_type,
        "expected_type": t.expected_type,
        "peer": t.peer,
        "agreement": t.agreement,
        "due_at": crate::clock::rfc3339_ms(t.due_at),
    });
    if now >= t.due_at {
        let mut detail = detail_base;
        detail["overdue_ms"] = json!(now - t.due_at);
        return Some(Firing {
            timer_id: t.id,
            reminders_fired: reminders.len() as i64,
            next_event_at: None,
            breached_at: Some(t.due_at),
            event: NewEvent {
                case_ref: t.case_ref.clone(),
                message_id: Some(t.message_id.clone()),
                kind: "breach",
                at: now,
                detail,
                alert: true,
            },
        });
    }
    let span = (t.due_at - t.started_at) as f64;
    let reached = reminders
        .iter()
        .rposition(|f| t.started_at + (span * f) as i64 <= now)?;
    let fired = reached + 1;
    let mut detail = detail_base;
    detail["fraction"] = json!(reminders[reached]);
    Some(Firing {
        timer_id: t.id,
        reminders_fired: fired as i64,
        next_event_at: next_event(t.started_at, t.due_at, reminders, fired),
        breached_at: None,
        event: NewEvent {
            case_ref: t.case_ref.clone(),
            message_id: Some(t.message_id.clone()),
            kind: "reminder",
            at: now,
            detail,
            alert: true,
        },
    })
}

/// The task that fires reminders and breaches.
pub struct Scheduler {
    node: Arc<Node>,
}

impl Scheduler {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Fires every event due now. Returns how many fired.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let now = self.node.clock.now_ms();
        let reminders = &self.node.settings.timers.reminders;
        let due = self.node.store.due_timers(now, BATCH).await?;
        let firings: Vec<(TimerRow, Firing)> = due
            .into_iter()
            .filter_map(|t| decide(&t, now, reminders).map(|f| (t, f)))
            .collect();
        if firings.is_empty() {
            return Ok(0);
        }
        let applied = self.node.store.apply_firings(&firings).await?;
        for (t, f) in &firings {
            let kind = f.event.kind;
            self.node.metrics.timer_event(kind);
            // case_ref and message_id only: never personal data in logs.
            if kind == "breach" {
                warn!(case_ref = %t.case_ref, message_id = %t.message_id, side = %t.side, expected = %t.expected_type,
                      due_at = %crate::clock::rfc3339_ms(t.due_at), "deadline breached");
            } else {
                info!(case_ref = %t.case_ref, message_id = %t.message_id, side = %t.side, expected = %t.expected_type,
                      due_at = %crate::clock::rfc3339_ms(t.due_at), "deadline reminder");
            }
        }
        if applied > 0 {
            self.node.alert_wake.notify_one();
        }
        Ok(applied)
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Before reading: a timer committed from here on either shows
            // in the reads or finds the scheduler awake and wakes it again.
            self.node.timer_wake.awake();
            match self.step().await {
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => {}
                Err(e) => error!(error = %e, "timer step failed"),
            }
            let wait = match self.node.store.next_timer_event().await {
                Ok(Some(at)) => {
                    let ms = (at - self.node.clock.now_ms()).max(0);
                    Duration::from_millis(ms as u64).min(MAX_SLEEP)
                }
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    error!(error = %e, "cannot read the next timer event");
                    Duration::from_secs(1)
                }
            };
            if wait.is_zero() {
                continue;
            }
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            self.node
                .timer_wake
                .sleeping_until(self.node.clock.now_ms().saturating_add(wait_ms));
            let jumps = self.node.clock.jumps();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.node.timer_wake.notify.notified() => {}
                _ = async { match jumps { Some(n) => n.notified().await, None => std::future::pending().await } } => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// SLA figures per agreement and message type over a window.
pub fn sla(timers: &[TimerRow], now: i64) -> Vec<SlaFigures> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(String, String, String), Vec<&TimerRow>> = BTreeMap::new();
    for t in timers {
        groups
            .entry((t.agreement.clone(), t.message_type.clone(), t.side.clone()))
            .or_default()
            .push(t);
    }
    groups
        .into_iter()
        .map(|((agreement, message_type, side), ts)| {
            let met: Vec<&&TimerRow> = ts.iter().filter(|t| t.state == "met").collect();
            let late = met
                .iter()
                .filter(|t| t.breached_at.is_some() || t.answered_at.unwrap_or(0) > t.due_at)
                .count();
            let mut answer_secs: Vec<f64> = met
                .iter()
                .filter_map(|t| t.answered_at.map(|a| (a - t.started_at) as f64 / 1000.0))
                .collect();
            answer_secs.sort_by(f64::total_cmp);
            let pct = |p: f64| -> Option<f64> {
                if answer_secs.is_empty() {
                    return None;
                }
                let idx = ((answer_secs.len() as f64 - 1.0) * p).round() as usize;
                Some(answer_secs[idx])
            };
            SlaFigures {
                agreement,
                message_type,
                expected_type: ts[0].expected_type.clone(),
                side,
                count: ts.len(),
                met_on_time: met.len() - late,
                met_late: late,
                open: ts.iter().filter(|t| t.state == "open").count(),
                breached: ts.iter().filter(|t| t.state == "breached").count(),
                overdue_now: ts
                    .iter()
                    .filter(|t| t.state != "met" && t.due_at < now)
                    .count(),
                median_seconds_to_answer: pct(0.5),
                p90_seconds_to_answer: pct(0.9),
            }
        })
        .collect()
}

/// How the timers of one agreement, message type and side kept time.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaFigures {
    pub agreement: String,
    pub message_type: String,
    pub expected_type: String,
    pub side: String,
    pub count: usize,
    pub met_on_time: usize,
    pub met_late: usize,
    pub open: usize,
    pub breached: usize,
    /// Not met, and the due time has passed.
    pub overdue_now: usize,
    pub median_seconds_to_answer: Option<f64>,
    pub p90_seconds_to_answer: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::deadline::first_event;

    fn timer(started: i64, due: i64, fired: i64, next: Option<i64>) -> TimerRow {
        TimerRow {
            id: 1,
            case_ref: "TH-KH-2026-000001".into(),
            message_id: "m".into(),
            message_type: "referral.notify".into(),
            expected_type: "referral.acknowledge".into(),
            side: "answer_due".into(),
            peer: "TH".into(),
            agreement: "kh-th".into(),
            started_at: started,
            due_at: due,
            state: "open".into(),
            reminders_fired: fired,
            next_event_at: next,
            breached_at: None,
            answered_at: None,
            answer_id: None,
        }
    }

    const R: &[f64] = &[0.5, 0.8];

    #[test]
    fn reminders_then_breach() {
        assert_eq!(first_event(0, 1000, R), Some(500));
        let t = timer(0, 1000, 0, Some(500));
        assert!(decide(&t, 499, R).is_none());
        let f = decide(&t, 500, R).unwrap();
        assert_eq!(
            (f.event.kind, f.reminders_fired, f.next_event_at),
            ("reminder", 1, Some(800))
        );
        let t = timer(0, 1000, 1, Some(800));
        let f = decide(&t, 850, R).unwrap();
        assert_eq!(
            (f.event.kind, f.reminders_fired, f.next_event_at),
            ("reminder", 2, Some(1000))
        );
        let t = timer(0, 1000, 2, Some(1000));
        let f = decide(&t, 1000, R).unwrap();
        assert_eq!(
            (f.event.kind, f.next_event_at, f.breached_at),
            ("breach", None, Some(1000))
        );
    }

    #[test]
    fn after_downtime_only_the_latest_event_fires() {
        let t = timer(0, 1000, 0, Some(500));
        let f = decide(&t, 900, R).unwrap();
        assert_eq!((f.event.kind, f.reminders_fired), ("reminder", 2));
        let f = decide(&t, 5000, R).unwrap();
        assert_eq!(f.event.kind, "breach");
    }
}
