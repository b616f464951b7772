//! Telemetry: in-process counters, exported in Prometheus text format at
//! `/metrics`, and the tracing set-up. Labels carry node, peer, state,
//! outcome and reason classes only, never personal data; log lines carry
//! `message_id` and `case_ref`, never payload fields.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the submit→receipt latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// A counter family for rendering: name, help, and (labels, value) series.
type Counter<'a> = (&'a str, &'a str, &'a [(&'a str, u64)]);

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
    pub store_errors: AtomicU64,
    latency: Mutex<Histogram>,
    handshake_failures: Mutex<BTreeMap<(String, String), u64>>,
    peers: Mutex<BTreeMap<String, PeerHealth>>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
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

    pub fn observe_latency(&self, seconds: f64) {
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if h.counts.is_empty() {
            h.counts = vec![0; LATENCY_BUCKETS.len()];
        }
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn handshake_failed(&self, port: &str, reason: &str) {
        *self
            .handshake_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((port.to_string(), reason.to_string()))
            .or_default() += 1;
    }

    pub fn peer_attempt(&self, peer: &str, reachable: bool, success: bool, now: i64) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let p = peers.entry(peer.to_string()).or_default();
        p.reachable = reachable;
        p.last_attempt = Some(now);
        if success {
            p.last_success = Some(now);
        }
    }

    pub fn peer_health(&self) -> BTreeMap<String, PeerHealth> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything, in Prometheus text format; `outbox` is (peer, state,
    /// count) and `timers` (state, count), read from the store.
    pub fn render(&self, outbox: &[(String, String, i64)], timers: &[(String, i64)]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters: [Counter; 6] = [
            (
                "homeward_messages_submitted_total",
                "Messages accepted for delivery.",
                &[("", g(&self.submitted))],
            ),
            (
                "homeward_messages_received_total",
                "Messages received from peers.",
                &[("", g(&self.received))],
            ),
            (
                "homeward_deliveries_total",
                "Delivery attempts by outcome.",
                &[
                    ("outcome=\"delivered\"", g(&self.delivered)),
                    ("outcome=\"rejected\"", g(&self.rejected)),
                    ("outcome=\"retry\"", g(&self.retried)),
                    ("outcome=\"dead\"", g(&self.dead)),
                ],
            ),
            (
                "homeward_timer_reminders_total",
                "Deadline reminders fired.",
                &[("", g(&self.reminders))],
            ),
            (
                "homeward_timer_breaches_total",
                "Deadlines breached.",
                &[("", g(&self.breaches))],
            ),
            (
                "homeward_store_errors_total",
                "Store operations that failed.",
                &[("", g(&self.store_errors))],
            ),
        ];
        for (name, help, series) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in series {
                let labels = if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{labels}}}")
                };
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP homeward_outbox_messages Outbox messages by peer and state.\n# TYPE homeward_outbox_messages gauge"
        );
        for (peer, state, n) in outbox {
            let _ = writeln!(
                out,
                "homeward_outbox_messages{{peer=\"{peer}\",state=\"{state}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP homeward_timers Timers by state.\n# TYPE homeward_timers gauge"
        );
        for (state, n) in timers {
            let _ = writeln!(out, "homeward_timers{{state=\"{state}\"}} {n}");
        }
        self.render_dynamic(&mut out);
        out
    }

    /// The histogram, handshake failures and peer gauges as Prometheus text.
    fn render_dynamic(&self, out: &mut String) {
        use std::fmt::Write;
        let h = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP homeward_delivery_latency_seconds Submission to peer receipt.\n# TYPE homeward_delivery_latency_seconds histogram"
        );
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "homeward_delivery_latency_seconds_bucket{{le=\"{b}\"}} {}",
                h.counts.get(i).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "homeward_delivery_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "homeward_delivery_latency_seconds_sum {}", h.sum);
        let _ = writeln!(out, "homeward_delivery_latency_seconds_count {}", h.count);
        let _ = writeln!(
            out,
            "# HELP homeward_tls_handshake_failures_total Refused or failed TLS handshakes by port and reason.\n# TYPE homeward_tls_handshake_failures_total counter"
        );
        for ((port, reason), n) in self
            .handshake_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "homeward_tls_handshake_failures_total{{port=\"{port}\",reason=\"{reason}\"}} {n}"
            );
        }
        let peers = self.peer_health();
        let _ = writeln!(
            out,
            "# HELP homeward_peer_up Whether the last delivery attempt reached the peer.\n# TYPE homeward_peer_up gauge"
        );
        for (peer, p) in &peers {
            let _ = writeln!(
                out,
                "homeward_peer_up{{peer=\"{peer}\"}} {}",
                u8::from(p.reachable)
            );
        }
        let _ = writeln!(
            out,
            "# HELP homeward_peer_last_success_timestamp_seconds Last delivery with a receipt.\n# TYPE homeward_peer_last_success_timestamp_seconds gauge"
        );
        for (peer, p) in &peers {
            if let Some(t) = p.last_success {
                let _ = writeln!(
                    out,
                    "homeward_peer_last_success_timestamp_seconds{{peer=\"{peer}\"}} {}",
                    t as f64 / 1000.0
                );
            }
        }
    }
}

/// A reason class for a failed handshake, for the metric label.
pub fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no_client_certificate",
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => "unknown_issuer",
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "expired",
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
