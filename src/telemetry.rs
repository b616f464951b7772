//! Telemetry: the node's metrics (`prometheus-client`, one registry per
//! node), exported in the OpenMetrics text format at `/metrics`, and the
//! tracing set-up. Labels carry node, peer, state,
//! outcome and reason classes only, never personal data; log lines carry
//! `message_id` and `case_ref`, never payload fields.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the submit→receipt latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    port: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    peer: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhichLabel {
    /// `tls`, `api_tls`, `signing`, `ca:<CC>`, `client_ca`.
    which: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignatureLabels {
    /// `envelope` (a peer's, refused here) or `receipt` (a peer's receipt
    /// this node would not count as delivery).
    what: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// One node's metrics, in a registry of its own: several gateways run in
/// one process (demo, tests, bench), so nothing is global.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub submitted: Counter,
    pub received: Counter,
    pub delivered: Counter,
    pub rejected: Counter,
    pub retried: Counter,
    pub dead: Counter,
    pub reminders: Counter,
    pub breaches: Counter,
    pub store_errors: Counter,
    latency: Histogram,
    handshake_failures: Family<HandshakeLabels, Counter>,
    signature_failures: Family<SignatureLabels, Counter>,
    certificate_expiry: Family<WhichLabel, Gauge>,
    reloads: Family<ResultLabel, Counter>,
    peer_up: Family<PeerLabel, Gauge>,
    peer_last_success: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    /// Read from the store at each scrape.
    outbox: Family<OutboxLabels, Gauge>,
    timers: Family<StateLabel, Gauge>,
    /// One scrape at a time: the store-read gauges are cleared and refilled.
    scrape: Mutex<()>,
    peers: Mutex<BTreeMap<String, PeerHealth>>,
}

/// What the gateway last saw of a peer.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PeerHealth {
    /// Whether the last attempt got an HTTP answer (any status).
    pub reachable: bool,
    /// Unix ms of the last delivery with a receipt.
    pub last_success: Option<i64>,
    /// Unix ms of the last attempt.
    pub last_attempt: Option<i64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let submitted = Counter::default();
        registry.register(
            "homeward_messages_submitted",
            "Messages accepted for delivery",
            submitted.clone(),
        );
        let received = Counter::default();
        registry.register(
            "homeward_messages_received",
            "Messages received from peers",
            received.clone(),
        );
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        let outcome = |o| {
            deliveries
                .get_or_create(&OutcomeLabel { outcome: o })
                .clone()
        };
        let (delivered, rejected, retried, dead) = (
            outcome("delivered"),
            outcome("rejected"),
            outcome("retry"),
            outcome("dead"),
        );
        registry.register(
            "homeward_deliveries",
            "Delivery attempts by outcome",
            deliveries,
        );
        let reminders = Counter::default();
        registry.register(
            "homeward_timer_reminders",
            "Deadline reminders fired",
            reminders.clone(),
        );
        let breaches = Counter::default();
        registry.register(
            "homeward_timer_breaches",
            "Deadlines breached",
            breaches.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "homeward_store_errors",
            "Store operations that failed",
            store_errors.clone(),
        );
        let signature_failures = Family::<SignatureLabels, Counter>::default();
        registry.register(
            "homeward_signature_failures",
            "Signatures that did not hold, by what was signed and why",
            signature_failures.clone(),
        );
        let outbox = Family::<OutboxLabels, Gauge>::default();
        registry.register(
            "homeward_outbox_messages",
            "Outbox messages by peer and state",
            outbox.clone(),
        );
        let timers = Family::<StateLabel, Gauge>::default();
        registry.register("homeward_timers", "Timers by state", timers.clone());
        let latency = Histogram::new(LATENCY_BUCKETS.iter().copied());
        registry.register(
            "homeward_delivery_latency_seconds",
            "Submission to peer receipt",
            latency.clone(),
        );
        let handshake_failures = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "homeward_tls_handshake_failures",
            "Refused or failed TLS handshakes by port and reason",
            handshake_failures.clone(),
        );
        let certificate_expiry = Family::<WhichLabel, Gauge>::default();
        registry.register(
            "homeward_certificate_expiry_timestamp_seconds",
            "When each certificate in force stops being valid (the earliest, where several)",
            certificate_expiry.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "homeward_reloads",
            "Reloads of certificates, keys, CRLs and agreements: done, or refused (old material kept)",
            reloads.clone(),
        );
        let peer_up = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "homeward_peer_up",
            "Whether deliveries to the peer flow (1) or wait for a probe to get a receipt (0)",
            peer_up.clone(),
        );
        let peer_last_success = Family::<PeerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "homeward_peer_last_success_timestamp_seconds",
            "Last delivery with a receipt",
            peer_last_success.clone(),
        );
        Self {
            registry,
            submitted,
            received,
            delivered,
            rejected,
            retried,
            dead,
            reminders,
            breaches,
            store_errors,
            latency,
            handshake_failures,
            signature_failures,
            certificate_expiry,
            reloads,
            peer_up,
            peer_last_success,
            outbox,
            timers,
            scrape: Mutex::new(()),
            peers: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn timer_event(&self, kind: &str) {
        match kind {
            "reminder" => self.reminders.inc(),
            "breach" => self.breaches.inc(),
            _ => 0,
        };
    }

    pub fn observe_latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    pub fn handshake_failed(&self, port: &str, reason: &str) {
        self.handshake_failures
            .get_or_create(&HandshakeLabels {
                port: port.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The certificates in force, `(which, not_after)`: replaces what was
    /// there (a reload may drop one).
    pub fn certificates<'a>(&self, certs: impl IntoIterator<Item = (&'a str, i64)>) {
        let mut earliest: BTreeMap<&str, i64> = BTreeMap::new();
        for (which, not_after) in certs {
            let e = earliest.entry(which).or_insert(not_after);
            *e = (*e).min(not_after);
        }
        self.certificate_expiry.clear();
        for (which, not_after) in earliest {
            self.certificate_expiry
                .get_or_create(&WhichLabel {
                    which: which.to_string(),
                })
                .set(not_after);
        }
    }

    /// A reload done (`ok`) or refused (`refused`).
    pub fn reloaded(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// A peer's envelope signature refused (`code` as in the refusal).
    pub fn signature_refused(&self, code: &str) {
        self.signature_failure("envelope", code);
    }

    /// A peer's receipt not counted as delivery.
    pub fn receipt_invalid(&self, code: &str) {
        self.signature_failure("receipt", code);
    }

    fn signature_failure(&self, what: &str, code: &str) {
        self.signature_failures
            .get_or_create(&SignatureLabels {
                what: what.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    pub fn peer_attempt(&self, peer: &str, reachable: bool, success: bool, now: i64) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let p = peers.entry(peer.to_string()).or_default();
        p.reachable = reachable;
        p.last_attempt = Some(now);
        let label = PeerLabel {
            peer: peer.to_string(),
        };
        if success {
            p.last_success = Some(now);
            self.peer_last_success
                .get_or_create(&label)
                .set(now as f64 / 1000.0);
        }
    }

    /// The delivery worker's view of `peer`: up after a receipt, down after
    /// a failure worth a retry (then only probes go to it).
    pub fn set_peer_up(&self, peer: &str, up: bool) {
        self.peer_up
            .get_or_create(&PeerLabel {
                peer: peer.to_string(),
            })
            .set(i64::from(up));
    }

    pub fn peer_health(&self) -> BTreeMap<String, PeerHealth> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]);
    /// `outbox` is (peer, state, count) and `timers` (state, count), read
    /// from the store for this scrape.
    pub fn render(&self, outbox: &[(String, String, i64)], timers: &[(String, i64)]) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        // A state with no messages left must not keep its last count.
        self.outbox.clear();
        for (peer, state, n) in outbox {
            self.outbox
                .get_or_create(&OutboxLabels {
                    peer: peer.clone(),
                    state: state.clone(),
                })
                .set(*n);
        }
        self.timers.clear();
        for (state, n) in timers {
            self.timers
                .get_or_create(&StateLabel {
                    state: state.clone(),
                })
                .set(*n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A reason class for a failed handshake, for the metric label.
pub fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no_client_certificate",
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => "unknown_issuer",
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "expired",
        Some(Error::InvalidCertificate(CertificateError::Revoked)) => "revoked",
        Some(Error::InvalidCertificate(_)) => "bad_certificate",
        Some(Error::PeerIncompatible(_)) => "incompatible",
        Some(_) => "protocol",
        None => "io",
    }
}

/// An error and its sources, `: `-separated: what a log line needs to say
/// why something failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Installs the process's log subscriber: `HOMEWARD_LOG` (an `EnvFilter`)
/// or `default_level`, to stderr, human-readable or one JSON object per
/// line with the current span's fields.
pub fn init_tracing(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOMEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// (metric as scraped, type, label keys), from a render with one series
    /// of every family.
    fn scraped() -> BTreeSet<(String, String, String)> {
        let m = Metrics::default();
        m.peer_attempt("TH", true, true, 1_700_000_000_000);
        m.set_peer_up("TH", true);
        m.handshake_failed("peer", "unknown_issuer");
        m.observe_latency(0.2);
        m.signature_refused("bad_signature");
        m.certificates([("tls", 1_800_000_000)]);
        m.reloaded("ok");
        let text = m.render(&[("TH".into(), "queued".into(), 3)], &[("open".into(), 2)]);
        let mut types = BTreeMap::new();
        let mut out = BTreeSet::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (family, kind) = t.split_once(' ').unwrap();
                types.insert(family.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let (family, kind) = types
                .iter()
                .filter(|(f, _)| name.starts_with(f.as_str()))
                .max_by_key(|(f, _)| f.len())
                .unwrap();
            let mut keys: Vec<&str> = line
                .split_once('{')
                .map(|(_, rest)| rest.split('}').next().unwrap())
                .into_iter()
                .flat_map(|l| l.split(','))
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                .filter(|k| *k != "le")
                .collect();
            keys.sort_unstable();
            let shown = if kind == "counter" {
                format!("{family}_total")
            } else {
                family.clone()
            };
            out.insert((shown, kind.clone(), keys.join(", ")));
        }
        out
    }

    #[test]
    fn the_readme_lists_every_metric_with_its_type_and_labels() {
        let readme: BTreeSet<(String, String, String)> = include_str!("../README.md")
            .lines()
            .filter(|l| l.starts_with("| `homeward_"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let labels = cells[3].replace('`', "");
                (
                    cells[1].trim_matches('`').to_string(),
                    cells[2].to_string(),
                    if labels == "—" {
                        String::new()
                    } else {
                        labels
                    },
                )
            })
            .collect();
        assert_eq!(
            readme,
            scraped(),
            "README's metrics table and the registry differ"
        );
    }

    #[test]
    fn a_store_count_that_drops_to_nothing_leaves_no_stale_series() {
        let m = Metrics::default();
        assert!(
            m.render(&[("TH".into(), "queued".into(), 3)], &[])
                .contains("state=\"queued\"} 3")
        );
        assert!(!m.render(&[], &[]).contains("state=\"queued\""));
    }
}
