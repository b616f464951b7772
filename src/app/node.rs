//! The node's shared state: what every application service, HTTP handler
//! and background task of one gateway reads. Built once at start by
//! `crate::gateway`; everything here is below the adapters that use it.

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::domain::access::Principal;
use crate::domain::admission::Admission;
use crate::domain::agreement::AgreementBook;
use crate::domain::calendar::WorkCalendar;
use crate::domain::deadline::DeadlinePolicy;
use crate::domain::message::SchemaRegistry;
use crate::ratelimit::RateLimiter;
use crate::signing::{Signer, Verifier};
use crate::store::Store;
use crate::telemetry::Metrics;

use super::wake::TimerWake;

/// What every handler and the workers share.
#[derive(Debug)]
pub struct Node {
    pub settings: Settings,
    pub country: String,
    pub registry: SchemaRegistry,
    pub agreements: AgreementBook,
    pub store: Store,
    pub clock: SharedClock,
    /// Wakes the delivery worker when a message is queued.
    pub wake: Notify,
    /// Token hash → who holds it.
    pub tokens: BTreeMap<String, Principal>,
    /// Client certificate subject → who holds it.
    pub cert_subjects: BTreeMap<String, Principal>,
    /// This country's working calendar, for deadlines this node owes.
    pub calendar: WorkCalendar,
    /// Wakes the timer scheduler when a timer opens.
    pub timer_wake: TimerWake,
    /// Wakes the webhook sender when an alert is queued.
    pub alert_wake: Notify,
    pub metrics: Metrics,
    /// Per token holder on the local API.
    pub api_limits: RateLimiter,
    /// Per peer country on the peer API.
    pub peer_limits: RateLimiter,
    /// Signs what this node sends and the receipts it issues, if configured.
    pub signer: Option<Signer>,
    /// Verifies peers' signatures, remembering chains that held.
    pub verifier: Verifier,
    /// Each peer country's CA certificates: whom its signatures must chain to.
    pub peer_cas: BTreeMap<String, Vec<CertificateDer<'static>>>,
}

impl Node {
    /// The admission rules as this node applies them.
    pub fn admission(&self) -> Admission<'_> {
        Admission {
            country: &self.country,
            registry: &self.registry,
            agreements: &self.agreements,
        }
    }

    /// Which timers messages open on this node, and when they fall due.
    pub fn deadlines(&self) -> DeadlinePolicy<'_> {
        DeadlinePolicy {
            country: &self.country,
            agreements: &self.agreements,
            calendar: &self.calendar,
            reminders: &self.settings.timers.reminders,
        }
    }

    /// When a message submitted now stops being retried.
    pub fn delivery_deadline(&self, now: i64) -> i64 {
        let ms = i64::try_from(
            self.settings
                .delivery
                .deadline_hours
                .saturating_mul(3_600_000),
        )
        .unwrap_or(i64::MAX);
        now.saturating_add(ms)
    }
}
