//! A peer that comes back drains at once: while a peer is down the worker
//! sends it one probe per interval instead of every due message, and the
//! probe's receipt makes every message waiting for that peer due now.
//! Driven step by step on a manual clock: nothing here waits for time.

use std::sync::Arc;

use homeward::app::delivery::Worker;
use homeward::clock::{Clock, ManualClock, SharedClock};
use homeward::config::Settings;
use homeward::gateway::RunningGateway;
use serde_json::Value;
use time::macros::datetime;

use crate::support::*;

/// KH, whose worker the test steps on a manual clock, with TH down (its
/// address reserved, nothing listening) and VN up.
struct Partition {
    pki: Pki,
    _data: tempfile::TempDir,
    clock: Arc<ManualClock>,
    kh: RunningGateway,
    kh_worker: Arc<Worker>,
    vn: RunningGateway,
    th_settings: Settings,
}

/// The probe interval: far below the messages' own backoff (30 to 60 s
/// after their first failure), so a drain within it can only come from the
/// probe.
const PROBE_MS: i64 = 100;

impl Partition {
    async fn new() -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(datetime!(2026-11-20 03:00 UTC));
        let shared: SharedClock = clock.clone();
        let th_addrs = (free_addr(), free_addr());
        let (kh_l, vn_l) = (bind(), bind());
        let mut kh_settings = settings_for(
            &pki,
            "KH",
            data.path(),
            &kh_l,
            &[("TH", th_addrs.0), ("VN", vn_l.peer_addr())],
        );
        kh_settings.delivery.initial_backoff_ms = 60_000;
        kh_settings.delivery.max_backoff_ms = 600_000;
        kh_settings.delivery.probe_interval_ms = PROBE_MS as u64;
        let vn_settings = settings_for(&pki, "VN", data.path(), &vn_l, &[("KH", kh_l.peer_addr())]);
        let th_settings = settings(
            &pki,
            "TH",
            data.path(),
            th_addrs,
            &[("KH", kh_l.peer_addr())],
        );
        let (kh, kh_worker) = start_manual_with(kh_settings, kh_l, shared).await;
        let (vn, _vn_worker) = start_manual(vn_settings, vn_l).await;
        Self {
            pki,
            _data: data,
            clock,
            kh,
            kh_worker,
            vn,
            th_settings,
        }
    }

    fn kh_api(&self) -> Api {
        api(&self.pki, "KH", self.kh.api_addr)
    }

    fn advance_ms(&self, ms: i64) {
        self.clock.advance(time::Duration::milliseconds(ms));
    }

    /// Submits a referral from KH to `peer` for case `serial`; its id.
    async fn submit(&self, peer: &str, serial: usize) -> String {
        let m = referral("KH", peer, &case_ref("KH", peer, serial), serial);
        let r = self.kh_api().submit(&m).await.unwrap();
        assert_eq!(r.status, 202, "{}", r.body);
        m["message_id"].as_str().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> Value {
        let r = self.kh_api().message(id).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Attempts made so far, summed over `ids`.
    async fn attempts(&self, ids: &[String]) -> i64 {
        let mut total = 0;
        for id in ids {
            total += self.status(id).await["attempts"].as_i64().unwrap();
        }
        total
    }

    /// KH's `homeward_peer_up` for `peer`.
    async fn peer_up(&self, peer: &str) -> Option<String> {
        let text = self
            .kh_api()
            .with_token(OPERATOR_TOKEN)
            .metrics_text()
            .await
            .unwrap()
            .text;
        let series = format!("homeward_peer_up{{peer=\"{peer}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(str::to_string)
    }

    /// Whether `id` waits for a next attempt later than now.
    async fn waits(&self, id: &str) -> bool {
        let s = self.status(id).await;
        let Some(due) = s["next_attempt_at"].as_str() else {
            return false;
        };
        let due = time::OffsetDateTime::parse(due, &time::format_description::well_known::Rfc3339)
            .unwrap();
        due > self.clock.now()
    }

    async fn stop(self) {
        self.kh.stop().await;
        self.vn.stop().await;
    }
}

#[tokio::test]
async fn a_peer_that_comes_back_gets_every_waiting_message_at_once() {
    let p = Partition::new().await;
    let mut to_th = Vec::new();
    for serial in 1..=5 {
        to_th.push(p.submit("TH", serial).await);
    }
    let to_vn = p.submit("VN", 1).await;

    // TH does not answer: its five fail together (one batch), VN's is
    // delivered in the same step.
    assert_eq!(step(&p.kh_worker).await, 6);
    assert_eq!(p.status(&to_vn).await["state"], "delivered");
    for id in &to_th {
        let s = p.status(id).await;
        assert_eq!(s["attempts"], 1, "{s}");
        assert_eq!(s["last_error"]["kind"], "transport", "{s}");
    }
    assert_eq!(p.peer_up("TH").await.as_deref(), Some("0"));
    assert_eq!(p.peer_up("VN").await.as_deref(), Some("1"));

    // A new message for TH waits for the probe; VN's go at once.
    to_th.push(p.submit("TH", 6).await);
    let to_vn2 = p.submit("VN", 2).await;
    assert_eq!(step(&p.kh_worker).await, 1, "only VN's message is sent");
    assert_eq!(p.status(&to_vn2).await["state"], "delivered");
    assert_eq!(p.attempts(&to_th).await, 5);

    // One probe each interval while TH is down.
    for probe in 1..=3 {
        p.advance_ms(PROBE_MS);
        assert_eq!(step(&p.kh_worker).await, 1, "probe {probe}");
        assert_eq!(step(&p.kh_worker).await, 0, "nothing before the next probe");
        assert_eq!(p.attempts(&to_th).await, 5 + probe);
    }
    for id in &to_th {
        assert!(p.waits(id).await, "every message waits out its backoff");
    }

    // TH starts. The next probe gets a receipt; every waiting message is
    // due now, and the next step, the clock still short of their backoff,
    // sends them all.
    let th = start_at(p.th_settings.clone(), homeward::clock::system()).await;
    p.advance_ms(PROBE_MS);
    assert_eq!(step(&p.kh_worker).await, 1, "the probe");
    let mut delivered = 0;
    for id in &to_th {
        if p.status(id).await["state"] == "delivered" {
            delivered += 1;
        } else {
            assert!(!p.waits(id).await, "due now after the probe");
        }
    }
    assert_eq!(delivered, 1, "the probe is one message");
    assert_eq!(p.peer_up("TH").await.as_deref(), Some("1"));
    assert_eq!(step(&p.kh_worker).await, 5, "the rest in one step");
    for id in &to_th {
        let s = p.status(id).await;
        assert_eq!(s["state"], "delivered", "{s}");
    }
    assert_eq!(step(&p.kh_worker).await, 0);
    // Each message once; the heal made them due without counting attempts.
    let th_api = api(&p.pki, "TH", th.api_addr);
    assert_eq!(read_inbox(&th_api).await.len(), 6);
    assert_eq!(p.attempts(&to_th).await, 8 + 1 + 5);
    th.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn a_peer_that_is_down_gets_one_attempt_per_probe_interval_however_many_are_due() {
    let p = Partition::new().await;
    let mut to_th = Vec::new();
    for serial in 1..=4 {
        to_th.push(p.submit("TH", serial).await);
    }
    assert_eq!(step(&p.kh_worker).await, 4);
    assert_eq!(p.attempts(&to_th).await, 4);
    // Past every message's own backoff: all four are due, one is sent.
    p.advance_ms(61_000);
    for id in &to_th {
        assert!(!p.waits(id).await);
    }
    let to_vn = p.submit("VN", 1).await;
    assert_eq!(step(&p.kh_worker).await, 2, "TH's probe and VN's message");
    assert_eq!(p.status(&to_vn).await["state"], "delivered");
    assert_eq!(step(&p.kh_worker).await, 0);
    assert_eq!(p.attempts(&to_th).await, 5);
    for probe in 1..=3 {
        p.advance_ms(PROBE_MS);
        assert_eq!(step(&p.kh_worker).await, 1);
        assert_eq!(step(&p.kh_worker).await, 0);
        assert_eq!(p.attempts(&to_th).await, 5 + probe);
    }
    for id in &to_th {
        assert_eq!(p.status(id).await["state"], "delivering");
    }
    p.stop().await;
}

#[tokio::test]
async fn a_message_for_a_peer_that_stays_down_still_dies_at_its_deadline() {
    let p = Partition::new().await;
    let first = p.submit("TH", 1).await;
    let second = p.submit("TH", 2).await;
    assert_eq!(step(&p.kh_worker).await, 2);
    // Past the delivery deadline (72 hours): both are tried once more and
    // are dead, though only one of them would have been the probe.
    p.advance_ms(73 * 3_600_000);
    assert_eq!(step(&p.kh_worker).await, 2);
    for id in [&first, &second] {
        let s = p.status(id).await;
        assert_eq!(s["state"], "dead", "{s}");
        assert_eq!(s["attempts"], 2, "{s}");
    }
    assert_eq!(step(&p.kh_worker).await, 0);
    p.stop().await;
}
