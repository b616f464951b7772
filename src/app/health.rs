//! What the delivery worker knows of each peer's health, in memory. A peer
//! that gave no answer, or answered 5xx, 408 or 429 (the failures worth a
//! retry), is down: instead of every due message it gets one probe (a real
//! delivery of one message) per probe interval, so an outage costs one
//! request per interval, not one per message. The first receipt brings it
//! back up, and the worker then makes every message waiting for it due at
//! once rather than each at the end of its own backoff.
//!
//! Each process keeps its own view: on PostgreSQL, instances learn a
//! peer's health from their own attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What an attempt said about its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A receipt.
    Up,
    /// No answer, or 5xx, 408, 429.
    Down,
    /// An answer that proves neither (a refusal, an unreadable receipt).
    Answered,
}

#[derive(Debug, Default)]
struct PeerState {
    /// Failed attempts since the last receipt; the peer is down while > 0.
    failures: i64,
    /// When a peer that is down is probed next (unix ms).
    next_probe_at: i64,
    /// Messages of this peer claimed by this worker and not yet settled.
    in_flight: usize,
    /// Came back up; its waiting messages are not yet made due.
    heal_pending: bool,
}

/// The worker's view of its peers.
#[derive(Debug, Default)]
pub struct Health {
    peers: Mutex<HashMap<String, PeerState>>,
}

/// What a claim may take now.
#[derive(Debug, Default)]
pub struct Plan {
    /// Peers that are down: their messages wait for a probe.
    pub down: Vec<String>,
    /// Down peers whose probe is due, with nothing of theirs in flight.
    pub probes: Vec<String>,
}

impl Health {
    fn peers(&self) -> MutexGuard<'_, HashMap<String, PeerState>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn plan(&self, now: i64) -> Plan {
        let mut plan = Plan::default();
        for (peer, s) in self.peers().iter().filter(|(_, s)| s.failures > 0) {
            plan.down.push(peer.clone());
            if s.next_probe_at <= now && s.in_flight == 0 {
                plan.probes.push(peer.clone());
            }
        }
        plan
    }

    /// The earliest probe the worker must wake for: of down peers with
    /// nothing in flight (the end of an attempt wakes it anyway).
    pub fn next_probe(&self) -> Option<i64> {
        self.peers()
            .values()
            .filter(|s| s.failures > 0 && s.in_flight == 0)
            .map(|s| s.next_probe_at)
            .min()
    }

    /// Counts `peers`' claimed messages as in flight until the guard drops
    /// (after their outcomes are recorded, or a panic).
    pub fn claimed<'a>(self: &Arc<Self>, peers: impl IntoIterator<Item = &'a str>) -> InFlight {
        let mut guard = InFlight {
            health: self.clone(),
            peers: Vec::new(),
        };
        for peer in peers {
            guard.add(peer);
        }
        guard
    }

    /// A probe of `peer` is on its way: no other before `until` (its
    /// lease), unless its outcome comes first.
    pub fn probe_sent(&self, peer: &str, until: i64) {
        if let Some(s) = self.peers().get_mut(peer) {
            s.next_probe_at = until;
        }
    }

    /// A down peer with nothing waiting for it: nothing to hold back, so
    /// its next message goes as any other (and a failure marks it down
    /// again).
    pub fn nothing_waiting(&self, peer: &str) {
        if let Some(s) = self.peers().get_mut(peer) {
            s.failures = 0;
        }
    }

    /// Records what an attempt said about `peer` at `now`; `probe_delay`
    /// gives the wait before the next probe after `failures` failures.
    /// Returns whether the peer is now up.
    pub fn report(
        &self,
        peer: &str,
        verdict: Verdict,
        now: i64,
        probe_delay: impl FnOnce(i64) -> i64,
    ) -> bool {
        let mut peers = self.peers();
        let s = peers.entry(peer.to_string()).or_default();
        match verdict {
            Verdict::Up => {
                if s.failures > 0 {
                    s.heal_pending = true;
                }
                s.failures = 0;
            }
            Verdict::Down => {
                s.failures = s.failures.saturating_add(1);
                s.next_probe_at = now.saturating_add(probe_delay(s.failures));
            }
            // It answers: probing again at once costs one request.
            Verdict::Answered => s.next_probe_at = now,
        }
        s.failures == 0
    }

    /// Whether `peer` came back up since the last call: its waiting
    /// messages are to be made due now.
    pub fn take_heal(&self, peer: &str) -> bool {
        self.peers()
            .get_mut(peer)
            .is_some_and(|s| std::mem::take(&mut s.heal_pending))
    }

    /// Whether `peer` is down.
    pub fn is_down(&self, peer: &str) -> bool {
        self.peers().get(peer).is_some_and(|s| s.failures > 0)
    }
}

/// Messages in flight, per peer, for as long as this lives.
#[derive(Debug)]
pub struct InFlight {
    health: Arc<Health>,
    peers: Vec<String>,
}

impl InFlight {
    pub fn add(&mut self, peer: &str) {
        self.health
            .peers()
            .entry(peer.to_string())
            .or_default()
            .in_flight += 1;
        self.peers.push(peer.to_string());
    }

    /// The peers of the messages, once each.
    pub fn peers(&self) -> Vec<String> {
        let mut peers = self.peers.clone();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut peers = self.health.peers();
        for peer in &self.peers {
            if let Some(s) = peers.get_mut(peer) {
                s.in_flight = s.in_flight.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_peer_is_probed_once_per_interval_and_heals_on_a_receipt() {
        let h = Arc::new(Health::default());
        assert!(h.plan(0).down.is_empty());
        assert!(!h.report("TH", Verdict::Down, 1_000, |_| 100));
        let plan = h.plan(1_050);
        assert_eq!((plan.down.len(), plan.probes.len()), (1, 0));
        assert_eq!(h.next_probe(), Some(1_100));
        assert_eq!(h.plan(1_100).probes, ["TH"]);
        {
            let _probe = h.claimed(["TH"]);
            assert!(h.plan(1_200).probes.is_empty(), "one probe at a time");
            assert_eq!(h.next_probe(), None);
        }
        assert_eq!(h.plan(1_200).probes, ["TH"]);
        assert!(!h.take_heal("TH"));
        assert!(h.report("TH", Verdict::Up, 1_300, |_| 100));
        assert!(h.take_heal("TH") && !h.take_heal("TH"));
        assert!(h.plan(1_300).down.is_empty());
    }
}
