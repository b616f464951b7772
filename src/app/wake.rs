//! Wake-ups between the services of one node: the timer scheduler sleeps
//! until its next event, and a newly opened timer due sooner wakes it.

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::Notify;

/// Wakes the scheduler when a timer opens whose first event falls before the
/// scheduler's own next wake-up. Most timers open days ahead of their first
/// event, and waking for each would cost two reads per delivered message on
/// both gateways for nothing.
#[derive(Debug)]
pub struct TimerWake {
    /// When the scheduler next wakes on its own (ms since the epoch);
    /// `i64::MIN` while it is awake and reading, so a timer opened meanwhile
    /// wakes it once more.
    planned: AtomicI64,
    pub(super) notify: Notify,
}

impl Default for TimerWake {
    fn default() -> Self {
        Self {
            planned: AtomicI64::new(i64::MIN),
            notify: Notify::new(),
        }
    }
}

impl TimerWake {
    /// Call after the commit that opened a timer whose first event is `at`.
    pub fn opened(&self, at: Option<i64>) {
        if at.is_some_and(|at| at < self.planned.load(Ordering::SeqCst)) {
            self.notify.notify_one();
        }
    }

    pub(super) fn awake(&self) {
        self.planned.store(i64::MIN, Ordering::SeqCst);
    }

    pub(super) fn sleeping_until(&self, at: i64) {
        self.planned.store(at, Ordering::SeqCst);
    }
}
