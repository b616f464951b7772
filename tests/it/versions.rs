//! Two schema versions side by side, between two real gateways: v1 and v2
//! messages of one type share a case, are delivered and show in both
//! timelines; a v2 gate is one of the corridor's agreement's gates, judged
//! by the sender and again by the receiver under its own copy; a version
//! the agreement does not pin is refused. Synthetic data only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use homeward::app::delivery::Worker;
use homeward::gateway::RunningGateway;
use serde_json::{Value, json};

use crate::support::*;

/// The shipped agreements in `dir/name`, KH–TH's text passed through `edit`.
fn agreements_with(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(agreements_dir()).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "kh-th.toml" {
            text = edit(text);
        }
        std::fs::write(out.join(path.file_name().unwrap()), text).unwrap();
    }
    out
}

struct Gateways {
    pki: Pki,
    _data: tempfile::TempDir,
    kh: RunningGateway,
    th: RunningGateway,
    kh_worker: Arc<Worker>,
    th_worker: Arc<Worker>,
}

impl Gateways {
    /// KH and TH, each under its own copy of the KH–TH agreement.
    async fn start(kh_edit: impl Fn(String) -> String, th_edit: impl Fn(String) -> String) -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().unwrap();
        let (kh_l, th_l) = (bind(), bind());
        let mut kh_s = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
        kh_s.agreements.dir = agreements_with(data.path(), "kh-agreements", kh_edit);
        let mut th_s = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
        th_s.agreements.dir = agreements_with(data.path(), "th-agreements", th_edit);
        let (kh, kh_worker) = start_manual(kh_s, kh_l).await;
        let (th, th_worker) = start_manual(th_s, th_l).await;
        Self {
            pki,
            _data: data,
            kh,
            th,
            kh_worker,
            th_worker,
        }
    }

    fn kh(&self) -> (Api, &Arc<Worker>) {
        (api(&self.pki, "KH", self.kh.api_addr), &self.kh_worker)
    }

    fn th(&self) -> (Api, &Arc<Worker>) {
        (api(&self.pki, "TH", self.th.api_addr), &self.th_worker)
    }

    async fn stop(self) {
        self.th.stop().await;
        self.kh.stop().await;
    }
}

fn id_of(m: &Value) -> String {
    m["message_id"].as_str().unwrap().to_string()
}

/// Submits `msg` (202) and steps the sender's worker once; the message's
/// status afterwards.
async fn submit_and_step((api, worker): (Api, &Arc<Worker>), msg: &Value) -> Value {
    let r = api.submit(msg).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    step_one(worker, &api, &id_of(msg)).await
}

/// Submits `msg` and has it delivered; its id.
async fn deliver(sender: (Api, &Arc<Worker>), msg: Value) -> String {
    let status = submit_and_step(sender, &msg).await;
    assert_eq!(status["state"], "delivered", "{status}");
    id_of(&msg)
}

/// A refusal at submission: its status and error body.
async fn refused(api: &Api, msg: &Value) -> (u16, Value) {
    let r = api.submit(msg).await.unwrap();
    (r.status, r.body["error"].clone())
}

/// A v2 repatriation request naming `gate`.
fn request_v2(from: &str, to: &str, case: &str, gate: &str) -> Value {
    let mut payload = example_payload_v("repatriation.request", 2, |p| p["gate"] == "POIPET");
    payload["gate"] = json!(gate);
    envelope_v(2, "repatriation.request", from, to, case, None, payload)
}

/// The shipped KH–TH text with one more (synthetic) gate.
fn with_test_gate(text: String) -> String {
    format!(
        "{text}\n[[gates]]\ncode = \"TEST_GATE_9\"\nmode = \"land\"\n\
         checkpoints = [\"Synthetic Post A\", \"Synthetic Post B\"]\n\
         names = {{ en = \"Synthetic Gate\", km = \"ច្រកសាកល្បង\", th = \"ด่านทดสอบ\" }}\n"
    )
}

/// The shipped KH–TH text with `type`'s rule pinned to `versions`.
fn pinned(text: String, message_type: &str, versions: &str) -> String {
    let rule = format!("type = \"{message_type}\"\n");
    assert!(text.contains(&rule), "{message_type} in kh-th.toml");
    text.replacen(&rule, &format!("{rule}versions = {versions}\n"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_messages_of_one_type_share_a_case_and_both_timelines() {
    let g = Gateways::start(|t| t, |t| t).await;
    let case = case_ref("TH", "KH", 201);

    // referral.notify v1, referral.acknowledge v1.
    let notify = deliver(g.th(), referral("TH", "KH", &case, 1)).await;
    let ack = envelope(
        "referral.acknowledge",
        "KH",
        "TH",
        &case,
        Some(&notify),
        example_payload("referral.acknowledge", |p| p["accepted"] == true),
    );
    let ack = deliver(g.kh(), ack).await;
    // repatriation.request v2 at Poipet, confirmed in v1.
    let request = deliver(g.th(), request_v2("TH", "KH", &case, "POIPET")).await;
    let confirm = envelope(
        "repatriation.confirm",
        "KH",
        "TH",
        &case,
        Some(&request),
        example_payload("repatriation.confirm", |p| p["decision"] == "accepted"),
    );
    let confirm = deliver(g.kh(), confirm).await;
    // The handover recorded in v1, countersigned in v2 naming the gate.
    let handover = envelope(
        "repatriation.handover",
        "TH",
        "KH",
        &case,
        None,
        example_payload("repatriation.handover", |p| p["record"] == "handover"),
    );
    let handover = deliver(g.th(), handover).await;
    let countersign = envelope_v(
        2,
        "repatriation.handover",
        "KH",
        "TH",
        &case,
        Some(&handover),
        example_payload_v("repatriation.handover", 2, |p| {
            p["record"] == "countersignature" && p["gate"] == "POIPET"
        }),
    );
    let countersign = deliver(g.kh(), countersign).await;
    // And a v2 referral in a second case, beside the v1 one.
    let other_case = case_ref("TH", "KH", 202);
    let notify_v2 = envelope_v(
        2,
        "referral.notify",
        "TH",
        "KH",
        &other_case,
        None,
        example_payload_v("referral.notify", 2, |p| {
            p["recruitment_channel"] == "relative"
        }),
    );
    let notify_v2 = deliver(g.th(), notify_v2).await;

    let sent: [(&str, &str, u32); 7] = [
        (&notify, "referral.notify", 1),
        (&ack, "referral.acknowledge", 1),
        (&request, "repatriation.request", 2),
        (&confirm, "repatriation.confirm", 1),
        (&handover, "repatriation.handover", 1),
        (&countersign, "repatriation.handover", 2),
        (&notify_v2, "referral.notify", 2),
    ];
    let (kh, _) = g.kh();
    let (th, _) = g.th();
    // Both timelines show every message of the case, in order, and the
    // same state; the countersignature (v2) answers the handover (v1).
    for (side, api) in [("KH", &kh), ("TH", &th)] {
        let view = api.case(&case).await.unwrap();
        assert_eq!(view.status, 200, "{}", view.body);
        assert_eq!(view.body["state"], "handed_over", "{side}: {}", view.body);
        let timeline: Vec<(String, String)> = view.body["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["message_id"].as_str().unwrap().to_string(),
                    m["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = sent[..6]
            .iter()
            .map(|(id, t, _)| (id.to_string(), t.to_string()))
            .collect();
        assert_eq!(timeline, want, "{side}'s timeline");
        let handover_timer = view.body["timers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["message_id"] == handover.as_str())
            .unwrap_or_else(|| panic!("{side}: the handover's timer: {}", view.body));
        assert_eq!(handover_timer["state"], "met", "{side}: {handover_timer}");
        assert_eq!(handover_timer["answer_id"], countersign.as_str());
        let other = api.case(&other_case).await.unwrap();
        assert_eq!(other.body["state"], "referred", "{side}: {}", other.body);
    }
    // Each receiver holds each envelope in the version it was sent, the v2
    // fields intact.
    let mut received = read_inbox(&kh).await;
    received.extend(read_inbox(&th).await);
    assert_eq!(received.len(), sent.len(), "each message received once");
    for (id, message_type, version) in sent {
        let entry = received
            .iter()
            .find(|e| e["message_id"] == id)
            .unwrap_or_else(|| panic!("{message_type} v{version} {id} not received"));
        let envelope = &entry["envelope"];
        assert_eq!(entry["type"], message_type);
        assert_eq!(envelope["schema_version"], version, "{envelope}");
        let payload = &envelope["payload"];
        match (message_type, version) {
            ("repatriation.request", 2) => {
                assert_eq!(payload["gate"], "POIPET");
                assert_eq!(payload["return_channel"], "embassy");
            }
            ("repatriation.handover", 2) => assert_eq!(payload["gate"], "POIPET"),
            ("referral.notify", 2) => assert_eq!(payload["recruitment_channel"], "relative"),
            (_, 1) => {
                for field in ["gate", "return_channel", "recruitment_channel"] {
                    assert!(payload.get(field).is_none(), "{message_type} v1: {field}");
                    assert_eq!(
                        homeward::domain::message::added_field(payload, field),
                        "unknown"
                    );
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Both versions are published.
    let schemas = kh.schemas().await.unwrap();
    for (t, v) in [
        ("referral.notify", 1),
        ("referral.notify", 2),
        ("repatriation.request", 2),
        ("repatriation.handover", 2),
    ] {
        assert!(
            schemas.body["schemas"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["type"] == t && s["version"] == v),
            "{t} v{v}: {}",
            schemas.body
        );
        let s = kh.schema(t, v).await.unwrap();
        assert_eq!(s.status, 200);
        assert_eq!(s.body["$id"], format!("urn:homeward:schema:{t}:v{v}"));
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_gate_is_refused_by_the_sender_and_by_a_receiver_whose_copy_lacks_it() {
    // KH's copy of KH–TH lists one more gate than TH's.
    let g = Gateways::start(with_test_gate, |t| t).await;
    let (kh, _) = g.kh();
    let (th, _) = g.th();
    let case = case_ref("KH", "TH", 301);
    let notify = deliver(g.kh(), referral("KH", "TH", &case, 3)).await;
    let ack = envelope(
        "referral.acknowledge",
        "TH",
        "KH",
        &case,
        Some(&notify),
        example_payload("referral.acknowledge", |p| p["accepted"] == true),
    );
    deliver(g.th(), ack).await;

    // A gate of the KH–VN corridor: KH refuses it, naming the agreement
    // and its own gates.
    let (status, error) = refused(&kh, &request_v2("KH", "TH", &case, "BAVET")).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["code"], "unknown_gate");
    assert_eq!(error["details"][0]["pointer"], "/payload/gate");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("`BAVET`") && message.contains("kh-th"),
        "{message}"
    );
    for code in ["POIPET", "CHAM_YEAM", "PNH_BKK", "TEST_GATE_9"] {
        assert!(
            error["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains(code),
            "{error}"
        );
    }
    // `POST /v1/validate` says the same before anything is sent.
    let report = kh
        .validate(&request_v2("KH", "TH", &case, "BAVET"))
        .await
        .unwrap();
    assert!(
        report.body.to_string().contains("/payload/gate"),
        "{}",
        report.body
    );

    // A gate only KH's copy lists: KH takes it, TH refuses it under its
    // own copy and stores nothing; KH's message is rejected with TH's
    // reason, which lists TH's gates.
    let test_gate = request_v2("KH", "TH", &case, "TEST_GATE_9");
    let status = submit_and_step(g.kh(), &test_gate).await;
    assert_eq!(status["state"], "rejected", "{status}");
    let last = &status["last_error"];
    assert!(last.to_string().contains("unknown_gate"), "{status}");
    assert!(last.to_string().contains("/payload/gate"), "{status}");
    let listed = last
        .pointer("/error/details/0/message")
        .or_else(|| last.pointer("/details/0/message"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("TH's details: {last}"));
    assert!(
        listed.contains("POIPET") && !listed.contains("TEST_GATE_9"),
        "TH lists its own gates: {listed}"
    );
    assert!(
        g.th.node
            .store
            .inbound(&id_of(&test_gate))
            .await
            .unwrap()
            .is_none(),
        "TH stored nothing"
    );
    assert!(
        read_inbox(&th)
            .await
            .iter()
            .all(|e| e["message_id"] != id_of(&test_gate).as_str())
    );
    let view = th.case(&case).await.unwrap();
    assert_eq!(view.body["state"], "acknowledged", "{}", view.body);

    // A gate both copies list crosses.
    deliver(g.kh(), request_v2("KH", "TH", &case, "CHAM_YEAM")).await;
    let view = th.case(&case).await.unwrap();
    assert_eq!(view.body["state"], "repatriation_proposed", "{}", view.body);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_agreement_does_not_pin_is_refused_by_sender_and_receiver() {
    // KH's copy pins referral.notify to v1; TH's takes every version.
    let g = Gateways::start(|t| pinned(t, "referral.notify", "[1]"), |t| t).await;
    let (kh, _) = g.kh();

    // KH refuses to send a v2 referral.
    let case = case_ref("KH", "TH", 401);
    let v2 = envelope_v(
        2,
        "referral.notify",
        "KH",
        "TH",
        &case,
        None,
        example_payload_v("referral.notify", 2, |_| true),
    );
    let (status, error) = refused(&kh, &v2).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["code"], "schema_version_not_agreed");
    assert_eq!(error["details"][0]["pointer"], "/schema_version");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("kh-th") && message.contains("[1]") && message.contains("not 2"),
        "{message}"
    );

    // TH sends one (its copy allows it); KH, the receiver, refuses it.
    let th_case = case_ref("TH", "KH", 402);
    let v2 = envelope_v(
        2,
        "referral.notify",
        "TH",
        "KH",
        &th_case,
        None,
        example_payload_v("referral.notify", 2, |_| true),
    );
    let status = submit_and_step(g.th(), &v2).await;
    assert_eq!(status["state"], "rejected", "{status}");
    assert!(
        status["last_error"]
            .to_string()
            .contains("schema_version_not_agreed"),
        "{status}"
    );
    assert!(
        g.kh.node
            .store
            .inbound(&id_of(&v2))
            .await
            .unwrap()
            .is_none()
    );
    // The same referral in v1 crosses.
    deliver(g.th(), referral("TH", "KH", &th_case, 4)).await;
    let view = kh.case(&th_case).await.unwrap();
    assert_eq!(view.body["state"], "referred", "{}", view.body);
    g.stop().await;
}

/// `homeward check-config` on the shipped KH configuration, its agreements
/// taken from `dir`: exit code and output.
fn check_config(dir: &Path) -> (Option<i32>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
        .current_dir(root)
        .env("HOMEWARD_AGREEMENTS__DIR", dir)
        .args(["check-config", "--config", "config/nodes/kh.toml"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_config_lists_the_gates_and_names_a_bad_gate_or_version() {
    let data = tempfile::tempdir().unwrap();
    let (code, out) = check_config(&agreements_with(data.path(), "shipped", |t| t));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("agreement `kh-th`") && out.contains("POIPET, CHAM_YEAM, PNH_BKK"),
        "{out}"
    );
    assert!(out.contains("BAVET, KAAM_SAMNOR, PNH_SGN"), "{out}");
    for (name, edit, key) in [
        (
            "dup",
            Box::new(|t: String| t.replace("code = \"CHAM_YEAM\"", "code = \"POIPET\""))
                as Box<dyn Fn(String) -> String>,
            "`gates[1].code`",
        ),
        (
            "names",
            Box::new(|t: String| t.replace(", th = \"ปอยเปต – อรัญประเทศ\"", "")),
            "`gates[0].names`",
        ),
        (
            "checkpoints",
            Box::new(|t: String| t.replace("[\"Cham Yeam\", \"Hat Lek\"]", "[\"Cham Yeam\"]")),
            "`gates[1].checkpoints`",
        ),
        (
            "version",
            Box::new(|t: String| pinned(t, "repatriation.confirm", "[2]")),
            "versions[0]`",
        ),
        (
            "empty",
            Box::new(|t: String| pinned(t, "repatriation.request", "[]")),
            "versions`",
        ),
    ] {
        let dir = agreements_with(data.path(), name, |t| {
            let edited = edit(t.clone());
            assert_ne!(edited, t, "{name}: the edit applies");
            edited
        });
        let (code, out) = check_config(&dir);
        assert_ne!(code, Some(0), "{name}: {out}");
        assert!(
            out.contains("kh-th.toml") && out.contains(key),
            "{name}: {out}"
        );
    }
}
