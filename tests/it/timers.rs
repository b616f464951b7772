//! Acknowledgement deadlines, by time travel: a manual clock shared by two
//! real gateways moves forward instead of the test sleeping.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use homeward::app::delivery::Worker;
use homeward::clock::{Clock, ManualClock, SharedClock};
use homeward::config::Settings;
use homeward::gateway::RunningGateway;
use serde_json::Value;
use time::macros::datetime;

const WAIT: Duration = Duration::from_secs(20);

/// A running gateway whose delivery worker the test drives.
struct Node {
    gateway: RunningGateway,
    worker: Arc<Worker>,
}

struct Net {
    pki: Pki,
    data: tempfile::TempDir,
    clock: Arc<ManualClock>,
    kh_settings: Settings,
    th_settings: Settings,
    kh: Option<Node>,
    th: Option<Node>,
}

impl Net {
    /// KH and TH on a manual clock starting Friday 2026-11-20 10:00 in Bangkok.
    async fn start(tweak: impl Fn(&mut Settings)) -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(datetime!(2026-11-20 03:00 UTC));
        // The listeners are bound at every (re)start; these addresses are
        // replaced then.
        let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut kh_settings = settings(&pki, "KH", data.path(), (any, any), &[("TH", any)]);
        let mut th_settings = settings(&pki, "TH", data.path(), (any, any), &[("KH", any)]);
        tweak(&mut kh_settings);
        tweak(&mut th_settings);
        let mut net = Self {
            pki,
            data,
            clock,
            kh_settings,
            th_settings,
            kh: None,
            th: None,
        };
        net.restart().await;
        net
    }

    /// Stops both gateways (if running) and starts them again on the same
    /// databases, on fresh ports the kernel binds, each told the other's.
    async fn restart(&mut self) {
        self.halt().await;
        let (kh_l, th_l) = (bind(), bind());
        (
            self.kh_settings.peer_api.listen,
            self.kh_settings.local_api.listen,
        ) = addrs(&kh_l);
        (
            self.th_settings.peer_api.listen,
            self.th_settings.local_api.listen,
        ) = addrs(&th_l);
        set_peer(&mut self.kh_settings, "TH", th_l.peer_addr());
        set_peer(&mut self.th_settings, "KH", kh_l.peer_addr());
        let clock: SharedClock = self.clock.clone();
        let (gateway, worker) =
            start_manual_with(self.kh_settings.clone(), kh_l, clock.clone()).await;
        self.kh = Some(Node { gateway, worker });
        let (gateway, worker) = start_manual_with(self.th_settings.clone(), th_l, clock).await;
        self.th = Some(Node { gateway, worker });
    }

    /// Stops both gateways.
    async fn halt(&mut self) {
        for n in [self.kh.take(), self.th.take()].into_iter().flatten() {
            n.gateway.stop().await;
        }
    }

    fn kh(&self) -> Sender {
        Sender {
            api: api(&self.pki, "KH", self.kh_settings.local_api.listen),
            worker: self.kh.as_ref().map(|n| n.worker.clone()),
        }
    }

    fn th(&self) -> Sender {
        Sender {
            api: api(&self.pki, "TH", self.th_settings.local_api.listen),
            worker: self.th.as_ref().map(|n| n.worker.clone()),
        }
    }

    fn advance(&self, d: time::Duration) {
        self.clock.advance(d);
    }

    async fn stop(mut self) {
        self.halt().await;
        drop(self.data);
    }
}

/// One side of a [`Net`]: its local API, and its delivery worker while it
/// runs.
struct Sender {
    api: Api,
    worker: Option<Arc<Worker>>,
}

impl std::ops::Deref for Sender {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Submits `msg` and delivers it with one step of the sender's worker.
async fn send(sender: &Sender, msg: Value) -> String {
    let r = sender.submit(&msg).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let id = msg["message_id"].as_str().unwrap().to_string();
    let worker = sender.worker.as_ref().expect("the sender runs");
    let s = step_one(worker, sender, &id).await;
    assert_eq!(s["state"], "delivered", "{s}");
    id
}

async fn case(api: &Api, case_ref: &str) -> Value {
    let r = api.case(case_ref).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn events_of(view: &Value, kind: &str) -> usize {
    view["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

/// Waits until both sides show `n` events of `kind` for the case.
async fn both_show(net: &Net, case_ref: &str, kind: &str, n: usize) {
    for api in [net.th(), net.kh()] {
        let case_ref = case_ref.to_string();
        eventually(&format!("{n} {kind} event(s)"), WAIT, || {
            let (api, case_ref) = (api.clone(), case_ref.clone());
            async move { events_of(&case(&api, &case_ref).await, kind) == n }
        })
        .await;
    }
}

#[tokio::test]
async fn both_sides_see_the_same_deadline_reminders_breach_and_a_late_answer() {
    let net = Net::start(|_| {}).await;
    let case_ref = case_ref("TH", "KH", 1);
    let referral_id = send(&net.th(), referral("TH", "KH", &case_ref, 1)).await;

    let th_view = case(&net.th(), &case_ref).await;
    let kh_view = case(&net.kh(), &case_ref).await;
    let (th_timer, kh_timer) = (&th_view["timers"][0], &kh_view["timers"][0]);
    assert_eq!(th_timer["side"], "awaiting_answer");
    assert_eq!(kh_timer["side"], "answer_due");
    assert_eq!(th_timer["expected_type"], "referral.acknowledge");
    assert_eq!(
        th_timer["due_at"], kh_timer["due_at"],
        "one deadline, seen by both"
    );
    assert_eq!(
        th_timer["due_at"], "2026-11-23T03:00:00Z",
        "3 calendar days from the receipt"
    );

    net.advance(time::Duration::hours(35));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        events_of(&case(&net.kh(), &case_ref).await, "reminder"),
        0,
        "not yet at 50%"
    );
    net.advance(time::Duration::hours(2)); // 37h: past 50% of 72h
    both_show(&net, &case_ref, "reminder", 1).await;
    net.advance(time::Duration::hours(21)); // 58h: past 80%
    both_show(&net, &case_ref, "reminder", 2).await;
    net.advance(time::Duration::hours(15)); // 73h: breached
    both_show(&net, &case_ref, "breach", 1).await;
    let r = net.th().timers(Some("breached")).await.unwrap();
    assert_eq!(r.body["timers"].as_array().unwrap().len(), 1, "{}", r.body);

    // The answer comes late: both timers close as met late, keeping both times.
    let ack = envelope(
        "referral.acknowledge",
        "KH",
        "TH",
        &case_ref,
        Some(&referral_id),
        serde_json::json!({"accepted": true, "receiver_case_number": "SYN-1",
            "responsible_officer": {"name": "Synthetic Officer", "organisation": "Synthetic Department"}}),
    );
    send(&net.kh(), ack).await;
    both_show(&net, &case_ref, "answered_late", 1).await;
    for api in [net.th(), net.kh()] {
        let t = &case(&api, &case_ref).await["timers"][0];
        assert_eq!(t["state"], "met");
        assert_eq!(t["met_late"], true);
        assert_eq!(t["breached_at"], "2026-11-23T03:00:00Z");
        assert!(t["answered_at"].as_str().unwrap() > t["due_at"].as_str().unwrap());
    }
    let sla = net.th().sla().await.unwrap().body;
    let g = &sla["groups"][0];
    assert_eq!(
        (
            g["count"].as_u64(),
            g["met_late"].as_u64(),
            g["met_on_time"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{sla}"
    );
    assert!(g["median_seconds_to_answer"].as_f64().unwrap() > 72.0 * 3600.0);
    net.stop().await;
}

#[tokio::test]
async fn an_answer_in_time_meets_the_deadline_and_nothing_fires() {
    let net = Net::start(|_| {}).await;
    let case_ref = case_ref("TH", "KH", 2);
    let referral_id = send(&net.th(), referral("TH", "KH", &case_ref, 2)).await;
    net.advance(time::Duration::hours(10));
    send(&net.kh(), acknowledge("KH", "TH", &case_ref, &referral_id)).await;
    both_show(&net, &case_ref, "answered", 1).await;
    net.advance(time::Duration::days(10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for api in [net.th(), net.kh()] {
        let view = case(&api, &case_ref).await;
        assert_eq!(view["timers"][0]["state"], "met");
        assert_eq!(
            events_of(&view, "reminder") + events_of(&view, "breach"),
            0,
            "{view}"
        );
    }
    let sla = net.kh().sla().await.unwrap().body;
    assert_eq!(sla["groups"][0]["met_on_time"], 1, "{sla}");
    assert_eq!(sla["groups"][0]["median_seconds_to_answer"], 36000.0);
    net.stop().await;
}

/// An agreement whose referral deadline is counted in business days.
fn business_day_agreements(dir: &std::path::Path) {
    let text = std::fs::read_to_string(agreements_dir().join("kh-th.toml"))
        .unwrap()
        .replace("deadline = \"3 days\"", "deadline = \"2 business_days\"");
    std::fs::write(dir.join("kh-th.toml"), text).unwrap();
}

#[tokio::test]
async fn business_days_are_counted_in_the_receivers_calendar() {
    let agreements = tempfile::tempdir().unwrap();
    business_day_agreements(agreements.path());
    let dir = agreements.path().to_path_buf();
    let net = Net::start(move |s| {
        s.agreements.dir = dir.clone();
        if s.node.country == "KH" {
            // Monday 2026-11-23 is a (synthetic) holiday in Cambodia.
            s.calendar.holidays = vec!["2026-11-23".into()];
        }
    })
    .await;
    let case_ref = case_ref("TH", "KH", 3);
    send(&net.th(), referral("TH", "KH", &case_ref, 3)).await;
    // Received Friday 10:00 (UTC+7): Saturday, Sunday and the Monday holiday
    // do not count; Tuesday is day 1, Wednesday day 2.
    for api in [net.th(), net.kh()] {
        let view = case(&api, &case_ref).await;
        assert_eq!(
            view["timers"][0]["due_at"], "2026-11-25T03:00:00Z",
            "{view}"
        );
    }
    net.stop().await;
}

#[tokio::test]
async fn a_breach_survives_restarts_and_fires_once() {
    let mut net = Net::start(|_| {}).await;
    let case_ref = case_ref("TH", "KH", 4);
    send(&net.th(), referral("TH", "KH", &case_ref, 4)).await;
    // Both gateways are down while the deadline passes.
    net.halt().await;
    net.advance(time::Duration::days(4));
    net.restart().await;
    both_show(&net, &case_ref, "breach", 1).await;
    // Stale reminders are not replayed after the breach.
    assert_eq!(events_of(&case(&net.kh(), &case_ref).await, "reminder"), 0);
    net.restart().await;
    net.advance(time::Duration::days(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for api in [net.th(), net.kh()] {
        assert_eq!(
            events_of(&case(&api, &case_ref).await, "breach"),
            1,
            "the breach fires once, never twice"
        );
    }
    net.stop().await;
}

#[tokio::test]
async fn an_undeliverable_message_dies_at_its_deadline_and_can_be_requeued() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(datetime!(2026-11-20 03:00 UTC));
    let shared: SharedClock = clock.clone();
    // KH starts later on the address TH already has for it.
    let kh_addrs = (free_addr(), free_addr());
    let th_l = bind();
    let mut th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_addrs.0)]);
    th_settings.delivery.deadline_hours = 1;
    th_settings.tokens.push(homeward::config::TokenSettings {
        name: "th-admin".into(),
        role: homeward::domain::access::Role::Admin,
        sha256: homeward::domain::access::hash_token("admin-token"),
        serves: None,
    });
    let th = start_with(th_settings, th_l, shared.clone()).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 5), 5);
    let id = msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    eventually("a failed attempt", WAIT, || async {
        th_api.message(&id).await.unwrap().body["attempts"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    })
    .await;
    clock.advance(time::Duration::hours(2));
    let s = th_api.wait_final(&id, WAIT).await.expect("dead");
    assert_eq!(s["state"], "dead", "{s}");
    let view = th_api
        .case(msg["case_ref"].as_str().unwrap())
        .await
        .unwrap()
        .body;
    assert_eq!(events_of(&view, "dead"), 1, "{view}");
    let metrics = th_api.with_token("admin-token").metrics_text().await;
    let _ = metrics;

    // The peer comes up; an admin re-queues the message and it is delivered.
    let kh = start_at(
        settings(&pki, "KH", data.path(), kh_addrs, &[("TH", th.peer_addr)]),
        shared,
    )
    .await;
    let admin = th_api.with_token("admin-token");
    let r = admin.outbox_retry(&id).await.unwrap();
    assert_eq!(r.status, 202);
    // TH still counts KH as down: the re-queued message goes as its next
    // probe, which falls due on TH's (manual) clock.
    clock.advance(time::Duration::seconds(5));
    let s = th_api.wait_final(&id, WAIT).await.expect("delivered");
    assert_eq!(s["state"], "delivered", "{s}");
    let r = admin.outbox_retry(&id).await.unwrap();
    assert_eq!(r.status, 409, "a delivered message is not re-queued");
    th.stop().await;
    kh.stop().await;
    let _ = clock.now();
}

/// A tiny HTTPS server standing in for an operator's alert webhook; it
/// fails the first request to prove alerts are retried.
async fn webhook(pki: &Pki) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<Value>>>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let paths = pki.paths("MY");
    let id = homeward::tls::Identity::load(&paths.api_cert, &paths.api_key).unwrap();
    let config = homeward::tls::api_server_config(&id, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen2, calls2) = (seen.clone(), calls.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen, calls) = (acceptor.clone(), seen2.clone(), calls2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, calls) = (seen.clone(), calls.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let status = if n == 0 { 500 } else { 200 };
                            if status == 200 {
                                seen.lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                            }
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(hyper::body::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn reminders_and_breaches_reach_the_operator_webhook_with_retries() {
    let pki = Pki::new();
    let (hook, seen) = webhook(&pki).await;
    let hook_ca = pki.paths("MY").ca_cert;
    let net = Net::start(move |s| {
        if s.node.country == "TH" {
            s.alerts.webhook_url = Some(format!("https://127.0.0.1:{}/hook", hook.port()));
            s.alerts.webhook_ca = Some(hook_ca.clone());
        }
    })
    .await;
    let case_ref = case_ref("TH", "KH", 9);
    let mut msg = referral("TH", "KH", &case_ref, 9);
    msg["payload"]["person"]["name_latin"] = serde_json::json!("Vexlorin Quabble");
    send(&net.th(), msg).await;
    net.advance(time::Duration::hours(37));
    both_show(&net, &case_ref, "reminder", 1).await;
    // The first delivery to the webhook fails; the retry comes a second later.
    for _ in 0..100 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        net.advance(time::Duration::seconds(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "reminder");
    assert_eq!(got[0]["case_ref"], case_ref.as_str());
    assert_eq!(got[0]["node"], "TH");
    assert!(
        !serde_json::to_string(&got).unwrap().contains("Vexlorin"),
        "no personal data in alerts"
    );
    net.stop().await;
}
