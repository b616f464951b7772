//! The node's shared state: what every application service, HTTP handler
//! and background task of one gateway reads. Built once at start by
//! `crate::gateway`; everything here is below the adapters that use it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::domain::access::Principal;
use crate::domain::admission::Admission;
use crate::domain::agreement::AgreementBook;
use crate::domain::calendar::WorkCalendar;
use crate::domain::deadline::DeadlinePolicy;
use crate::domain::message::SchemaRegistry;
use crate::ratelimit::RateLimiter;
use crate::store::Store;
use crate::telemetry::Metrics;

use super::wake::TimerWake;

/// What every handler and the workers share.
#[derive(Debug)]
pub struct Node {
    pub settings: Settings,
    pub country: String,
    pub registry: SchemaRegistry,
    /// The agreements in force; replaced whole on reload.
    agreements: RwLock<Arc<AgreementBook>>,
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
    /// Certificates, keys, CAs and CRLs in force; replaced whole on reload.
    credentials: RwLock<Arc<Credentials>>,
    /// Counts installs of new material: connections served under an older
    /// one close once idle, so the next request handshakes anew.
    generation: watch::Sender<u64>,
}

/// What a node is built from besides its settings.
pub struct Parts {
    pub settings: Settings,
    pub registry: SchemaRegistry,
    pub agreements: AgreementBook,
    pub credentials: Credentials,
    pub store: Store,
    pub clock: SharedClock,
    pub tokens: BTreeMap<String, Principal>,
    pub cert_subjects: BTreeMap<String, Principal>,
    pub calendar: WorkCalendar,
}

impl Node {
    pub fn new(p: Parts) -> Self {
        let s = &p.settings;
        Self {
            country: s.node.country.clone(),
            api_limits: RateLimiter::new(s.local_api.rate_per_second, s.local_api.burst),
            peer_limits: RateLimiter::new(s.peer_api.rate_per_second, s.peer_api.burst),
            registry: p.registry,
            agreements: RwLock::new(Arc::new(p.agreements)),
            store: p.store,
            clock: p.clock,
            wake: Notify::new(),
            tokens: p.tokens,
            cert_subjects: p.cert_subjects,
            calendar: p.calendar,
            timer_wake: TimerWake::default(),
            alert_wake: Notify::new(),
            metrics: Metrics::default(),
            credentials: RwLock::new(Arc::new(p.credentials)),
            generation: watch::Sender::new(0),
            settings: p.settings,
        }
    }

    /// The credentials in force now (a snapshot: a reload does not change
    /// what a caller already holds).
    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The agreements in force now (a snapshot, as [`Self::credentials`]).
    pub fn agreements(&self) -> Arc<AgreementBook> {
        self.agreements
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts new material in force for every request and connection that
    /// starts from now on.
    pub fn install(&self, credentials: Credentials, agreements: AgreementBook) {
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(credentials);
        *self.agreements.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(agreements);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Changes each time [`Self::install`] runs.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The admission rules as this node applies them.
    pub fn admission(&self) -> Admission<'_> {
        Admission {
            country: &self.country,
            registry: &self.registry,
            agreements: self.agreements(),
        }
    }

    /// Which timers messages open on this node, and when they fall due.
    pub fn deadlines(&self) -> DeadlinePolicy<'_> {
        DeadlinePolicy {
            country: &self.country,
            agreements: self.agreements(),
            calendar: &self.calendar,
            reminders: &self.settings.timers.reminders,
        }
    }

    /// The keyed hashes of the search terms a message yields (its
    /// documents, the receiver's case number), to store with it.
    pub fn search_digests(&self, message_type: &str, payload: &serde_json::Value) -> Vec<String> {
        crate::domain::search::terms_of(message_type, payload)
            .iter()
            .map(|t| self.store.search_digest(t))
            .collect()
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
