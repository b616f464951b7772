//! In-process counters, exported in Prometheus text format at `/metrics`.
//! Labels carry node, peer, state and event kinds only, never personal data.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub reminders: AtomicU64,
    pub breaches: AtomicU64,
    pub dead: AtomicU64,
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    pub retried: AtomicU64,
    pub received: AtomicU64,
    pub submitted: AtomicU64,
}

impl Metrics {
    pub fn timer_event(&self, kind: &str) {
        match kind {
            "reminder" => self.reminders.fetch_add(1, Ordering::Relaxed),
            "breach" => self.breaches.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
