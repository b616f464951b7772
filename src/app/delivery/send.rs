//! Sending: one message, or a batch for one peer, over the peer's mutual
//! TLS client, signed when this node signs; what comes back goes to
//! [`super::answer`].

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use super::Worker;
use super::answer::{Answer, retry_after, retryable};
use crate::app::health::Verdict;
use crate::protocol::{BatchRequest, BatchResponse, RECEIPT_SIGNATURE_HEADER, SIGNATURE_HEADER};
use crate::store::{Claimed, Outcome};

impl Worker {
    pub(super) async fn attempt(&self, c: &Claimed) -> Outcome {
        let clients = self.clients();
        let Some(peer) = clients.by_peer.get(&c.peer) else {
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

    /// Sends a group of messages for one peer as a batch. A peer without
    /// the batch route (404) or refusing the batch as a whole gets the
    /// messages one by one instead.
    pub(super) async fn attempt_batch(self: Arc<Self>, group: Vec<Claimed>) -> Vec<(i64, Outcome)> {
        let clients = self.clients();
        let peer = &clients.by_peer[&group[0].peer];
        // Serialized straight from the stored texts, not via a copy in a `Value`.
        let signatures: Vec<Option<String>> = if self.node.credentials().signer.is_some() {
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
    pub(super) fn unreachable(&self, peer: &str, e: &reqwest::Error) -> Value {
        let message = crate::telemetry::error_chain(e);
        self.node
            .metrics
            .peer_attempt(peer, false, false, self.node.clock.now_ms());
        self.judge(peer, Verdict::Down);
        warn!(error = %message, "peer unreachable");
        json!({"kind": "transport", "message": message})
    }
}
