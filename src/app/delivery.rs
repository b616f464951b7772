//! The delivery worker: takes due messages from the outbox, sends each to
//! its peer over mutual TLS and records the outcome. A receipt marks the
//! message `delivered`; a 4xx refusal marks it `rejected` with the peer's
//! reason (no retry: resending the same bytes cannot fix it); transport
//! errors, 408, 429 and 5xx are retried with capped exponential backoff and
//! jitter until the delivery deadline, after which the message is `dead`.
//! A peer that fails so is down: it gets one probe per interval instead
//! of every due message, and its first receipt makes every message waiting
//! for it due at once ([`super::health`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use super::health::{Health, InFlight, Verdict};
use super::node::Node;
use crate::config::DeliverySettings;
use crate::domain::deadline::{Side, Timed};
use crate::protocol::{
    BATCH_MAX, BATCH_PATH, BatchRequest, BatchResponse, MESSAGES_PATH, RECEIPT_SIGNATURE_HEADER,
    Receipt, SIGNATURE_HEADER,
};
use crate::signing::{self, Purpose};
use crate::store::{Claimed, Outcome, StoreError};
use crate::tls::{self, Identity, TlsError};

/// Longest the idle worker sleeps before looking again (deadlines pass even
/// when nothing is submitted).
const MAX_IDLE: Duration = Duration::from_secs(30);

struct PeerClient {
    client: reqwest::Client,
    url: reqwest::Url,
    batch_url: reqwest::Url,
}

/// A peer's answer to one message.
struct Answer {
    status: reqwest::StatusCode,
    retry_after: Option<u64>,
    text: String,
    /// What this node sent as its signature of the message.
    signature: Option<String>,
    /// The peer's signature of the receipt in `text`.
    receipt_signature: Option<String>,
}

/// A delivery client that cannot be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("delivery client for peer {peer}: {message}")]
    Client { peer: String, message: String },
}

pub struct Worker {
    node: Arc<Node>,
    peers: BTreeMap<String, PeerClient>,
    health: Arc<Health>,
}

/// Messages claimed for one attempt, counted in flight for their peers'
/// health until the attempt is recorded.
struct Claim {
    messages: Vec<Claimed>,
    in_flight: InFlight,
}

/// Delay before attempt `attempts + 1`: exponential from the initial delay,
/// capped, with the upper half jittered so retries of many messages spread.
pub fn backoff(settings: &DeliverySettings, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = settings
        .initial_backoff_ms
        .saturating_mul(1u64 << exp)
        .min(settings.max_backoff_ms);
    let half = base / 2;
    let jitter = if half > 0 {
        rand::rng().random_range(0..=half)
    } else {
        0
    };
    Duration::from_millis(half + jitter)
}

impl Worker {
    pub fn new(
        node: Arc<Node>,
        identity: &Identity,
        peer_cas: &BTreeMap<String, Vec<CertificateDer<'static>>>,
    ) -> Result<Self, DeliveryError> {
        let mut peers = BTreeMap::new();
        for peer in &node.settings.peers {
            let err = |message: String| DeliveryError::Client {
                peer: peer.country.clone(),
                message,
            };
            let ca = peer_cas
                .get(&peer.country)
                .ok_or_else(|| err("no CA loaded".into()))?;
            let tls = tls::peer_client_config(Some(identity), ca, &peer.country)?;
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .timeout(node.settings.delivery.request_timeout())
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| err(e.to_string()))?;
            let base =
                reqwest::Url::parse(&peer.base_url).map_err(|e| err(format!("base_url: {e}")))?;
            let url = base
                .join(MESSAGES_PATH)
                .map_err(|e| err(format!("base_url: {e}")))?;
            let batch_url = base
                .join(BATCH_PATH)
                .map_err(|e| err(format!("base_url: {e}")))?;
            peers.insert(
                peer.country.clone(),
                PeerClient {
                    client,
                    url,
                    batch_url,
                },
            );
        }
        Ok(Self {
            node,
            peers,
            health: Arc::default(),
        })
    }

    /// Runs until `shutdown`; finishes the attempts in flight before
    /// returning.
    ///
    /// Up to `delivery.concurrency` messages are in flight at once, in
    /// batches of at most [`BATCH_MAX`] per claim: the worker claims the next
    /// batch while earlier ones are on the wire or being recorded, so the
    /// round trip (claim, the peer's commit, recording) does not cap the
    /// rate. Per-case order holds because only a case's head is ever due,
    /// and a claimed head stays claimed until its outcome is recorded.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let this = self;
        match this
            .node
            .store
            .release_claims(this.node.clock.now_ms())
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(
                messages = n,
                "attempts cut off by the last stop are due again"
            ),
            Err(e) => {
                error!(error = %e, "cannot release the last run's claims; they wait for their lease")
            }
        }
        let capacity = this.node.settings.delivery.concurrency.max(1);
        let mut in_flight: JoinSet<usize> = JoinSet::new();
        // Messages per task, to free their room even if a task panics.
        let mut sizes: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut sending = 0usize;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Fill the pipeline.
            let mut wait = None;
            while sending < capacity {
                let room = (capacity - sending).min(BATCH_MAX);
                match this.claim(room).await {
                    Ok(None) => {
                        wait = Some(this.until_due().await);
                        break;
                    }
                    Ok(Some((n, attempt))) => {
                        sending += n;
                        sizes.insert(in_flight.spawn(attempt).id(), n);
                        // Fewer than asked: nothing else is due now, and
                        // another claim would only come back empty. The
                        // attempt's end brings the worker back.
                        if n < room {
                            break;
                        }
                    }
                    Err(e) => {
                        this.node.metrics.store_errors.inc();
                        error!(error = %e, "cannot claim due messages; retrying shortly");
                        wait = Some(Duration::from_secs(1));
                        break;
                    }
                }
            }
            // `None` (full, or all that was due is in flight): the next
            // event that matters is an attempt ending.
            if wait.is_some_and(|w| w.is_zero()) {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    sending -= settled(&mut sizes, done);
                    while let Some(done) = in_flight.try_join_next_with_id() {
                        sending -= settled(&mut sizes, done);
                    }
                }
                // A submission wakes an idle worker only: with batches in
                // flight, the next claim waits for one to end, so claims
                // gather what arrived meanwhile instead of one write
                // transaction per submission competing with the submitters
                // for the writer (one submitter at a time: 30% slower).
                _ = this.node.wake.notified(), if wait.is_some() && in_flight.is_empty() => {}
                _ = tokio::time::sleep(wait.unwrap_or(MAX_IDLE)), if wait.is_some() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// How long until the next message is due (capped: deadlines pass even
    /// when nothing is submitted).
    async fn until_due(&self) -> Duration {
        let now = self.node.clock.now_ms();
        // Messages for peers that are down wait for their peer's probe.
        let down = self.health.plan(now).down;
        let probe = self.health.next_probe();
        match self.node.store.next_due_except(&down).await {
            Ok(due) => match due.into_iter().chain(probe).min() {
                Some(due) => {
                    let ms = due.saturating_sub(now).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(MAX_IDLE)
                }
                None => MAX_IDLE,
            },
            Err(e) => {
                error!(error = %e, "cannot read the next due time");
                Duration::from_secs(1)
            }
        }
    }

    /// One step of the loop, for whoever drives delivery itself (tests,
    /// tools): claims what is due now (at most one batch), sends it and
    /// records every outcome. Returns how many messages it settled; 0 when
    /// nothing was due.
    pub async fn step(self: &Arc<Self>) -> Result<usize, StoreError> {
        let claim = self.claim_now(BATCH_MAX).await?;
        if claim.messages.is_empty() {
            return Ok(0);
        }
        self.deliver(claim).await
    }

    /// Claims up to `limit` messages due now for peers that are up (and
    /// for peers that are down, those past their deadline), then one probe
    /// for each down peer whose probe is due.
    async fn claim_now(&self, limit: usize) -> Result<Claim, StoreError> {
        let now = self.node.clock.now_ms();
        let plan = self.health.plan(now);
        let store = &self.node.store;
        let messages = store
            .claim_due_except(now, i64::try_from(limit).unwrap_or(i64::MAX), &plan.down)
            .await?;
        let mut claim = Claim {
            in_flight: self
                .health
                .claimed(messages.iter().map(|c| c.peer.as_str())),
            messages,
        };
        for peer in plan.probes {
            // Messages past their deadline go anyway, and probe the peer.
            if claim.messages.len() >= limit || claim.messages.iter().any(|c| c.peer == peer) {
                continue;
            }
            match store.claim_probe(now, &peer).await? {
                Some(c) => {
                    info!(peer = %peer, message_id = %c.message_id, "probing a peer that is down");
                    self.health.probe_sent(
                        &peer,
                        now.saturating_add(self.node.settings.delivery.lease_ms as i64),
                    );
                    claim.in_flight.add(&peer);
                    claim.messages.push(c);
                }
                None => self.health.nothing_waiting(&peer),
            }
        }
        Ok(claim)
    }

    /// Claims up to `limit` due messages and returns the attempt that sends
    /// them and records the outcomes (`None`: nothing is due).
    async fn claim(
        self: &Arc<Self>,
        limit: usize,
    ) -> Result<Option<(usize, impl Future<Output = usize> + Send + 'static)>, StoreError> {
        let claim = self.claim_now(limit).await?;
        if claim.messages.is_empty() {
            return Ok(None);
        }
        let n = claim.messages.len();
        let this = self.clone();
        Ok(Some((n, async move {
            if let Err(e) = this.deliver(claim).await {
                // The claims stand until their lease runs out; then the
                // messages are due again (a resend is recognised by the
                // peer as the same message).
                this.node.metrics.store_errors.inc();
                error!(error = %e, "cannot record delivery outcomes; the messages will be retried");
            }
            n
        })))
    }

    /// Sends claimed messages (several for one peer as one batch: one TLS
    /// request, one commit at the receiver; a lone message on its own) and
    /// records every outcome in one transaction.
    async fn deliver(self: &Arc<Self>, claim: Claim) -> Result<usize, StoreError> {
        let Claim {
            messages: claimed,
            in_flight,
        } = claim;
        let mut set = JoinSet::new();
        let mut submitted = HashMap::new();
        let mut by_peer: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
        for c in claimed {
            by_peer.entry(c.peer.clone()).or_default().push(c);
        }
        let mut singles = Vec::new();
        for (peer, group) in by_peer {
            if group.len() == 1 || !self.peers.contains_key(&peer) {
                singles.extend(group);
                continue;
            }
            for c in &group {
                submitted.insert(c.seq, c.submitted_at);
            }
            let this = self.clone();
            let span = tracing::info_span!("deliver_batch", peer = %peer, messages = group.len());
            set.spawn(async move { this.attempt_batch(group).await }.instrument(span));
        }
        for c in singles {
            let this = self.clone();
            let span = tracing::info_span!("deliver", message_id = %c.message_id, case_ref = %c.case_ref, peer = %c.peer, attempt = c.attempts);
            submitted.insert(c.seq, c.submitted_at);
            set.spawn(async move { vec![(c.seq, this.attempt(&c).await)] }.instrument(span));
        }
        let mut results = Vec::with_capacity(submitted.len());
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.extend(r),
                // A panicking attempt leaves its row `delivering`; it will be
                // tried again when its lease runs out.
                Err(e) => error!(error = %e, "delivery attempt panicked"),
            }
        }
        let n = results.len();
        self.node.store.record(&results).await?;
        for (seq, outcome) in &results {
            let m = &self.node.metrics;
            match outcome {
                Outcome::Delivered { timer, at, .. } => {
                    m.delivered.inc();
                    if let Some(submitted_at) = submitted.get(seq) {
                        m.observe_latency((*at - *submitted_at).max(0) as f64 / 1000.0);
                    }
                    self.node
                        .timer_wake
                        .opened(timer.as_ref().and_then(|t| t.first_event_at));
                }
                Outcome::Rejected { .. } => {
                    m.rejected.inc();
                }
                Outcome::Retry { .. } => {
                    m.retried.inc();
                }
                Outcome::Dead { .. } => {
                    m.dead.inc();
                    self.node.alert_wake.notify_one();
                }
            }
        }
        // After the record, so the probe itself is settled before the rest
        // of its peer's messages become due.
        for peer in in_flight.peers() {
            if self.health.take_heal(&peer) {
                self.heal(&peer).await?;
            }
        }
        Ok(n)
    }

    /// `peer` answered with a receipt after being down: everything waiting
    /// for it is due now, and the worker is woken to send it.
    async fn heal(&self, peer: &str) -> Result<(), StoreError> {
        let now = self.node.clock.now_ms();
        let moved = self.node.store.due_now_for_peer(peer, now).await?;
        info!(peer = %peer, messages = moved, "peer is back; its waiting messages are due now");
        self.node.wake.notify_one();
        Ok(())
    }

    /// Notes what an attempt said about `peer`, for its health and the
    /// `homeward_peer_up` gauge.
    fn judge(&self, peer: &str, verdict: Verdict) {
        let now = self.node.clock.now_ms();
        let was_down = self.health.is_down(peer);
        let settings = &self.node.settings.delivery;
        // Probes back off like retries, but up to the probe interval only:
        // a probe is one request, however long the backlog.
        let probe = DeliverySettings {
            max_backoff_ms: settings.probe_interval_ms.min(settings.max_backoff_ms),
            initial_backoff_ms: settings
                .initial_backoff_ms
                .min(settings.probe_interval_ms.min(settings.max_backoff_ms)),
            ..settings.clone()
        };
        let up = self.health.report(peer, verdict, now, |failures| {
            i64::try_from(backoff(&probe, failures).as_millis()).unwrap_or(i64::MAX)
        });
        if verdict != Verdict::Answered {
            self.node.metrics.set_peer_up(peer, up);
        }
        if !up && !was_down {
            warn!(peer = %peer, "peer is down; probing it instead of sending every message");
        }
    }

    async fn attempt(&self, c: &Claimed) -> Outcome {
        let Some(peer) = self.peers.get(&c.peer) else {
            return self.retry_or_dead(
                c,
                json!({"kind": "config", "message": format!("no peer {} configured", c.peer)}),
            );
        };
        let signature = self.sign(c);
        let mut request = peer
            .client
            .post(peer.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(c.body.clone());
        if let Some(jws) = &signature {
            request = request.header(SIGNATURE_HEADER, jws);
        }
        let sent = request.send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let error = self.unreachable(&c.peer, &e);
                return self.retry_or_dead(c, error);
            }
        };
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let receipt_signature = resp
            .headers()
            .get(RECEIPT_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        self.node.metrics.peer_attempt(
            &c.peer,
            true,
            status.is_success(),
            self.node.clock.now_ms(),
        );
        let answer = Answer {
            status,
            retry_after,
            text,
            signature,
            receipt_signature,
        };
        let outcome = self.classify(c, answer);
        let verdict = match &outcome {
            Outcome::Delivered { .. } => Verdict::Up,
            _ if retryable(status) => Verdict::Down,
            _ => Verdict::Answered,
        };
        self.judge(&c.peer, verdict);
        outcome
    }

    /// This node's signature of a message's exact bytes (deterministic:
    /// every attempt sends the same).
    fn sign(&self, c: &Claimed) -> Option<String> {
        self.node
            .signer
            .as_ref()
            .map(|s| s.sign(Purpose::Envelope, c.body.as_bytes()))
    }

    /// Whether a receipt proves delivery to a third party: signed by the
    /// peer's document-signing certificate, over these exact bytes, quoting
    /// the signature this node sent. An unsigned receipt is taken from a
    /// peer that does not sign (yet).
    fn check_receipt(
        &self,
        c: &Claimed,
        receipt: &Receipt,
        text: &str,
        answer: &Answer,
    ) -> Result<(), String> {
        if let Some(sent) = &answer.signature
            && let Some(quoted) = &receipt.signature_sha256
            && *quoted != signing::digest(sent)
        {
            return Err("the receipt quotes another signature than the one sent".into());
        }
        let Some(jws) = &answer.receipt_signature else {
            return Ok(());
        };
        let trusted = self
            .node
            .peer_cas
            .get(&c.peer)
            .map_or(&[][..], Vec::as_slice);
        self.node
            .verifier
            .verify_now(jws, Purpose::Receipt, text.as_bytes(), trusted, &c.peer)
            .map(|_| ())
            .map_err(|e| {
                self.node.metrics.receipt_invalid(e.code());
                format!("{}: {e}", e.code())
            })
    }

    /// Turns the peer's answer for one message into an outcome.
    fn classify(&self, c: &Claimed, answer: Answer) -> Outcome {
        let status = answer.status;
        let retry_after = answer.retry_after;
        if status.is_success() {
            return match serde_json::from_str::<Receipt>(&answer.text) {
                Ok(r) if r.message_id == c.message_id && r.envelope_sha256 == c.body_sha256 => {
                    if let Err(why) = self.check_receipt(c, &r, &answer.text, &answer) {
                        // Never a silent "delivered": the peer holds the
                        // message, but this node has no proof of it yet.
                        error!(reason = %why, "the peer's receipt does not hold; will retry");
                        return self.retry_or_dead(
                            c,
                            json!({"kind": "receipt_invalid", "status": status.as_u16(), "message": why}),
                        );
                    }
                    info!("delivered");
                    let now = self.node.clock.now_ms();
                    let received_at = crate::clock::parse_rfc3339_ms(&r.received_at).unwrap_or(now);
                    let due_at = r
                        .answer_due
                        .as_ref()
                        .and_then(|a| crate::clock::parse_rfc3339_ms(&a.due_at));
                    let timer = self.node.deadlines().timer_for(
                        Side::AwaitingAnswer,
                        Timed {
                            case_ref: &c.case_ref,
                            message_id: &c.message_id,
                            message_type: &c.message_type,
                            is_reply: c.in_reply_to.is_some(),
                            peer: &c.peer,
                        },
                        received_at,
                        due_at,
                    );
                    Outcome::Delivered {
                        receipt: answer.text,
                        signature: answer.signature,
                        receipt_signature: answer.receipt_signature,
                        at: now,
                        received_at,
                        timer,
                    }
                }
                Ok(_) => {
                    error!("peer receipt does not match the message sent");
                    Outcome::Rejected {
                        reason: json!({"kind": "receipt_mismatch", "status": status.as_u16(),
                            "message": "the peer's receipt names another message or other content"})
                        .to_string(),
                    }
                }
                Err(e) => self.retry_or_dead(
                    c,
                    json!({"kind": "bad_receipt", "status": status.as_u16(), "message": format!("unreadable receipt: {e}")}),
                ),
            };
        }
        let text = &answer.text;
        let peer_error: Value = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("error").cloned())
            .unwrap_or_else(|| json!({"message": text.chars().take(500).collect::<String>()}));
        let detail =
            json!({"kind": "peer_refused", "status": status.as_u16(), "error": peer_error});
        if retryable(status) {
            warn!(status = status.as_u16(), "peer failed; will retry");
            let mut outcome = self.retry_or_dead(c, detail);
            if let (
                Outcome::Retry {
                    next_attempt_at, ..
                },
                Some(secs),
            ) = (&mut outcome, retry_after)
            {
                let asked = self
                    .node
                    .clock
                    .now_ms()
                    .saturating_add(i64::try_from(secs.min(3600) * 1000).unwrap_or(0));
                *next_attempt_at = (*next_attempt_at).max(asked);
            }
            outcome
        } else {
            warn!(status = status.as_u16(), "peer rejected the message");
            Outcome::Rejected {
                reason: detail.to_string(),
            }
        }
    }

    /// Sends a group of messages for one peer as a batch. A peer without
    /// the batch route (404) or refusing the batch as a whole gets the
    /// messages one by one instead.
    async fn attempt_batch(self: Arc<Self>, group: Vec<Claimed>) -> Vec<(i64, Outcome)> {
        let peer = &self.peers[&group[0].peer];
        // Serialized straight from the stored texts, not via a copy in a `Value`.
        let signatures: Vec<Option<String>> = if self.node.signer.is_some() {
            group.iter().map(|c| self.sign(c)).collect()
        } else {
            Vec::new()
        };
        let body = BatchRequest {
            messages: group.iter().map(|c| c.body.as_str().into()).collect(),
            signatures: signatures.clone(),
        };
        let sent = peer
            .client
            .post(peer.batch_url.clone())
            .json(&body)
            .send()
            .await;
        let now = self.node.clock.now_ms();
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let error = self.unreachable(&group[0].peer, &e);
                return group
                    .iter()
                    .map(|c| (c.seq, self.retry_or_dead(c, error.clone())))
                    .collect();
            }
        };
        let status = resp.status();
        self.node
            .metrics
            .peer_attempt(&group[0].peer, true, status.is_success(), now);
        let retry_after = retry_after(&resp);
        let text = resp.text().await.unwrap_or_default();
        // Receipts stay the exact bytes the receiver issued: they are evidence.
        let results = serde_json::from_str::<BatchResponse>(&text)
            .ok()
            .map(|r| r.results)
            .filter(|r| r.len() == group.len());
        match (status.as_u16(), results) {
            (200, Some(results)) => {
                let outcomes: Vec<(i64, Outcome)> = group
                .iter()
                .zip(results)
                .enumerate()
                .map(|(i, (c, r))| {
                    let item_status = reqwest::StatusCode::from_u16(r.status)
                        .unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
                    let item_text = match (&r.receipt, &r.error) {
                        (Some(receipt), _) if item_status.is_success() => receipt.get().to_string(),
                        (_, error) => json!({ "error": error }).to_string(),
                    };
                    let span = tracing::info_span!("deliver", message_id = %c.message_id, case_ref = %c.case_ref, peer = %c.peer, attempt = c.attempts);
                    let answer = Answer {
                        status: item_status,
                        retry_after: None,
                        text: item_text,
                        signature: signatures.get(i).cloned().flatten(),
                        receipt_signature: r.receipt_signature,
                    };
                    (c.seq, span.in_scope(|| self.classify(c, answer)))
                })
                .collect();
                let receipts = outcomes
                    .iter()
                    .any(|(_, o)| matches!(o, Outcome::Delivered { .. }));
                let verdict = if receipts {
                    Verdict::Up
                } else {
                    Verdict::Answered
                };
                self.judge(&group[0].peer, verdict);
                outcomes
            }
            (s, _) if s == 429 || s >= 500 => {
                self.judge(&group[0].peer, Verdict::Down);
                group
                    .iter()
                    .map(|c| {
                        let answer = Answer {
                            status,
                            retry_after,
                            text: text.clone(),
                            signature: None,
                            receipt_signature: None,
                        };
                        (c.seq, self.classify(c, answer))
                    })
                    .collect()
            }
            _ => {
                let mut out = Vec::with_capacity(group.len());
                for c in &group {
                    out.push((c.seq, self.attempt(c).await));
                }
                out
            }
        }
    }

    /// A request that got no HTTP answer: the peer is marked unreachable
    /// and the error is what each message's retry records.
    fn unreachable(&self, peer: &str, e: &reqwest::Error) -> Value {
        let message = crate::telemetry::error_chain(e);
        self.node
            .metrics
            .peer_attempt(peer, false, false, self.node.clock.now_ms());
        self.judge(peer, Verdict::Down);
        warn!(error = %message, "peer unreachable");
        json!({"kind": "transport", "message": message})
    }

    fn retry_or_dead(&self, c: &Claimed, error: Value) -> Outcome {
        let now = self.node.clock.now_ms();
        if now >= c.deadline_at {
            error!(
                attempts = c.attempts,
                "delivery deadline passed; message is dead"
            );
            return Outcome::Dead {
                error: error.to_string(),
                at: now,
            };
        }
        let delay = backoff(&self.node.settings.delivery, c.attempts);
        let next = now
            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
            .min(c.deadline_at);
        Outcome::Retry {
            error: error.to_string(),
            next_attempt_at: next,
        }
    }
}

/// Whether a status is a failure worth a retry (and a sign the peer is
/// down): 5xx, 408, 429.
fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The peer's `Retry-After`, in seconds, if it sent one.
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// How many messages a finished attempt task had in flight.
fn settled(
    sizes: &mut HashMap<tokio::task::Id, usize>,
    done: Result<(tokio::task::Id, usize), tokio::task::JoinError>,
) -> usize {
    let id = match done {
        Ok((id, _)) => id,
        Err(e) => {
            // Its claims stand until their lease runs out.
            error!(error = %e, "a delivery task panicked");
            e.id()
        }
    };
    sizes.remove(&id).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = DeliverySettings {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..DeliverySettings::default()
        };
        for _ in 0..50 {
            let d1 = backoff(&s, 1).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = backoff(&s, 3).as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d40 = backoff(&s, 40).as_millis();
            assert!((500..=1000).contains(&d40), "{d40}");
        }
    }
}
