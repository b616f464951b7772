//! The delivery worker: takes due messages from the outbox, sends each to
//! its peer over mutual TLS and records the outcome. A receipt marks the
//! message `delivered`; a 4xx refusal marks it `rejected` with the peer's
//! reason (no retry: resending the same bytes cannot fix it); transport
//! errors, 408, 429 and 5xx are retried with capped exponential backoff and
//! jitter until the delivery deadline, after which the message is `dead`.
//! A peer that fails so is down: it gets one probe per interval instead
//! of every due message, and its first receipt makes every message waiting
//! for it due at once ([`super::health`]).

mod answer;
mod send;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use super::health::{Health, InFlight, Verdict};
use super::node::Node;
use crate::config::DeliverySettings;
use crate::protocol::{BATCH_MAX, BATCH_PATH, MESSAGES_PATH};
use crate::store::{Claimed, Outcome, StoreError};
use crate::tls::{self, TlsError};

/// Longest the idle worker sleeps before looking again (deadlines pass even
/// when nothing is submitted).
const MAX_IDLE: Duration = Duration::from_secs(30);

struct PeerClient {
    client: reqwest::Client,
    url: reqwest::Url,
    batch_url: reqwest::Url,
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
    clients: Mutex<Arc<Clients>>,
    generation: watch::Receiver<u64>,
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

/// The delivery clients, one per peer, built from one set of credentials.
struct Clients {
    /// The node's credentials generation they were built from.
    generation: u64,
    by_peer: BTreeMap<String, PeerClient>,
}

impl Clients {
    fn build(node: &Node, generation: u64) -> Result<Self, DeliveryError> {
        let credentials = node.credentials();
        let mut by_peer = BTreeMap::new();
        for peer in &node.settings.peers {
            let err = |message: String| DeliveryError::Client {
                peer: peer.country.clone(),
                message,
            };
            let tls = tls::peer_client_config(
                Some(&credentials.identity),
                credentials.cas_of(&peer.country),
                credentials.crls_of(&peer.country),
                &peer.country,
            )?;
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
            by_peer.insert(
                peer.country.clone(),
                PeerClient {
                    client,
                    url,
                    batch_url,
                },
            );
        }
        Ok(Self {
            generation,
            by_peer,
        })
    }
}

impl Worker {
    pub fn new(node: Arc<Node>) -> Result<Self, DeliveryError> {
        let generation = node.generation();
        let clients = Clients::build(&node, *generation.borrow())?;
        Ok(Self {
            node,
            clients: Mutex::new(Arc::new(clients)),
            generation,
            health: Arc::default(),
        })
    }

    /// The clients for the credentials in force: rebuilt after a reload,
    /// so the next connection to a peer presents the new certificate and
    /// judges the peer by the new CAs and CRLs (the old pool's connections
    /// close with it).
    fn clients(&self) -> Arc<Clients> {
        let now = *self.generation.borrow();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.generation != now {
            match Clients::build(&self.node, now) {
                Ok(fresh) => *clients = Arc::new(fresh),
                // The credentials already loaded, so this is unexpected;
                // keep delivering with the clients there are.
                Err(e) => {
                    error!(error = %e, "could not rebuild the delivery clients after a reload; delivering with the previous ones");
                }
            }
        }
        clients.clone()
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
        let clients = self.clients();
        let mut set = JoinSet::new();
        let mut submitted = HashMap::new();
        let mut by_peer: BTreeMap<String, Vec<Claimed>> = BTreeMap::new();
        for c in claimed {
            by_peer.entry(c.peer.clone()).or_default().push(c);
        }
        let mut singles = Vec::new();
        for (peer, group) in by_peer {
            if group.len() == 1 || !clients.by_peer.contains_key(&peer) {
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
