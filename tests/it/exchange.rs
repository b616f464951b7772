//! Two real gateways (KH, TH) over mutual TLS on random 127.0.0.1 ports with
//! SQLite files: submission, delivery, receipts, the inbox feed, and every
//! refusal on the submit path.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn referral_flows_th_to_kh_and_acknowledgement_flows_back() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", 42);

    let msg = referral("TH", "KH", &case, 1);
    let r = th.submit(&msg).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let id = msg["message_id"].as_str().unwrap();
    assert_eq!(r.body["message_id"], id);
    assert_eq!(r.body["status_url"], format!("/v1/messages/{id}"));

    let status = step_one(pair.th_worker(), &th, id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    assert_eq!(status["receipt"]["receiver"], "KH");
    assert_eq!(status["receipt"]["message_id"], id);
    assert_eq!(status["attempts"], 1);

    let inbox = read_inbox(&kh).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["message_id"], id);
    assert_eq!(inbox[0]["from"], "TH");
    assert_eq!(
        inbox[0]["envelope"], msg,
        "the receiver holds exactly what was sent"
    );
    assert_eq!(
        inbox[0]["receipt"], status["receipt"],
        "both sides keep the same receipt"
    );

    let ack = acknowledge("KH", "TH", &case, id);
    let r = kh.submit(&ack).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let ack_id = ack["message_id"].as_str().unwrap();
    let status = step_one(pair.kh_worker(), &kh, ack_id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    let th_inbox = read_inbox(&th).await;
    assert_eq!(th_inbox.len(), 1);
    assert_eq!(th_inbox[0]["in_reply_to"], id);

    // Both sides see the case's timeline.
    for api in [&th, &kh] {
        let case_view = api.case(&case).await.unwrap();
        assert_eq!(case_view.status, 200);
        let types: Vec<&str> = case_view.body["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["referral.notify", "referral.acknowledge"]);
    }
    // The inbox cursor moves on: nothing after the last message.
    let cursor = kh.inbox(Some("0"), None).await.unwrap().body["next_cursor"].clone();
    let after = kh
        .inbox(Some(cursor.as_str().unwrap()), None)
        .await
        .unwrap();
    assert_eq!(after.body["messages"], json!([]));
    pair.stop().await;
}

#[tokio::test]
async fn same_message_id_sent_to_the_peer_twice_is_stored_once_with_the_same_receipt() {
    let pair = Pair::start().await;
    let identity = pair.pki.identity(&pair.pki.paths("TH"));
    let client = pair.kh_peer_client(Some(&identity));
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 7), 7);
    let body = serde_json::to_vec(&msg).unwrap();
    let mut receipts = Vec::new();
    for _ in 0..2 {
        let resp = client
            .post(pair.kh_peer_url())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        receipts.push(resp.json::<Value>().await.unwrap());
    }
    assert_eq!(receipts[0], receipts[1]);
    assert_eq!(read_inbox(&pair.kh_api()).await.len(), 1);

    // Same id, different content: refused, the first stays.
    let mut other = msg.clone();
    other["payload"]["risk_level"] = json!("high");
    let resp = client
        .post(pair.kh_peer_url())
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "duplicate_message_id");
    let inbox = read_inbox(&pair.kh_api()).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["envelope"], msg);
    pair.stop().await;
}

#[tokio::test]
async fn message_submitted_while_peer_is_down_is_delivered_once_it_starts() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    // KH starts later on the address TH already has for it.
    let kh_addrs = (free_addr(), free_addr());
    let th_l = bind();
    let th_peer = th_l.peer_addr();
    let th = start(
        settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_addrs.0)]),
        th_l,
    )
    .await;
    let th_api = api(&pki, "TH", th.api_addr);

    let msg = referral("TH", "KH", &case_ref("TH", "KH", 9), 9);
    let id = msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    // Several attempts fail while KH is down; the error says why.
    eventually("retries against the absent peer", WAIT, || async {
        let s = th_api.message(&id).await.unwrap().body;
        s["state"] == "delivering" && s["attempts"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    let s = th_api.message(&id).await.unwrap().body;
    assert_eq!(s["last_error"]["kind"], "transport", "{s}");

    let kh = start_at(
        settings(&pki, "KH", data.path(), kh_addrs, &[("TH", th_peer)]),
        homeward::clock::system(),
    )
    .await;
    let status = th_api
        .wait_final(&id, WAIT)
        .await
        .expect("delivered after the peer started");
    assert_eq!(status["state"], "delivered", "{status}");
    let inbox = read_inbox(&api(&pki, "KH", kh.api_addr)).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["message_id"], id.as_str());
    th.stop().await;
    kh.stop().await;
}

#[tokio::test]
async fn invalid_payload_is_refused_with_every_violation_and_nothing_is_queued() {
    let pair = Pair::start().await;
    let th = pair.th_api();
    let mut msg = referral("TH", "KH", &case_ref("TH", "KH", 3), 3);
    msg["payload"]["person"]["sex"] = json!("unknown-value");
    msg["payload"]["risk_level"] = json!(7);
    msg["payload"]["person"]
        .as_object_mut()
        .unwrap()
        .remove("presumed_minor");
    let r = th.submit(&msg).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "schema_violation");
    let details = r.body["error"]["details"].as_array().unwrap();
    let found: Vec<(&str, &str)> = details
        .iter()
        .map(|d| {
            (
                d["pointer"].as_str().unwrap(),
                d["keyword"].as_str().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("/payload/person/sex", "enum"),
        ("/payload/risk_level", "type"),
        ("/payload/person", "required"),
    ] {
        assert!(
            found.contains(&expected),
            "{expected:?} missing from {found:?}"
        );
    }
    let id = msg["message_id"].as_str().unwrap();
    assert_eq!(th.message(id).await.unwrap().status, 404);
    pair.stop().await;
}

/// Sends a raw request to the local API.
async fn raw_submit(api: &Api, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = api.submit_raw(content_type, body).await.unwrap();
    (r.status, r.body)
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_nothing_is_stored() {
    let pair = Pair::start().await;
    let th = pair.th_api();
    let good = referral("TH", "KH", &case_ref("TH", "KH", 5), 5);

    let (s, b) = raw_submit(&th, "text/plain", serde_json::to_vec(&good).unwrap()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let (s, b) = raw_submit(&th, "application/json", b"{\"case_ref\": ".to_vec()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("malformed_json"))
    );

    let (s, b) = raw_submit(&th, "application/json", b"[1, 2]".to_vec()).await;
    assert_eq!(s, 400, "{b}");

    let mut huge = good.clone();
    huge["payload"]["needs"]["notes"] = json!("x".repeat(2 * 1024 * 1024));
    let (s, b) = raw_submit(&th, "application/json", serde_json::to_vec(&huge).unwrap()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );

    let mut extra = good.clone();
    extra["priority"] = json!("urgent");
    let (s, b) = raw_submit(&th, "application/json", serde_json::to_vec(&extra).unwrap()).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["error"]["details"][0]["keyword"], "additionalProperties",
        "{b}"
    );

    // Nesting far deeper than any message needs, built as text so the
    // test itself does not recurse.
    let mut nested = good.clone();
    nested["payload"]["needs"]["notes"] = json!("DEEP");
    let text = serde_json::to_string(&nested).unwrap().replace(
        "\"DEEP\"",
        &format!("{}1{}", "[".repeat(5000), "]".repeat(5000)),
    );
    let (s, b) = raw_submit(&th, "application/json", text.into_bytes()).await;
    assert_eq!(b["error"]["code"], "malformed_json", "{b}");
    assert!(
        (400..500).contains(&s),
        "deep nesting must be a 4xx, got {s}"
    );

    let mut version = good.clone();
    version["schema_version"] = json!(9);
    let (s, b) = raw_submit(
        &th,
        "application/json",
        serde_json::to_vec(&version).unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("unsupported_schema_version")),
        "{b}"
    );
    assert!(
        // referral.notify has two versions now, and names both.
        b["error"]["message"].as_str().unwrap().contains("[1, 2]"),
        "{b}"
    );

    let mut unknown = good.clone();
    unknown["type"] = json!("referral.gossip");
    let (s, b) = raw_submit(
        &th,
        "application/json",
        serde_json::to_vec(&unknown).unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("unknown_type")),
        "{b}"
    );

    let mut wrong_from = good.clone();
    wrong_from["from"] = json!("VN");
    wrong_from["case_ref"] = json!("VN-KH-2026-000005");
    let (s, b) = raw_submit(
        &th,
        "application/json",
        serde_json::to_vec(&wrong_from).unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("wrong_sender")),
        "{b}"
    );

    let mut bad_case = good.clone();
    bad_case["case_ref"] = json!("VN-MY-2026-000005");
    let (s, b) = raw_submit(
        &th,
        "application/json",
        serde_json::to_vec(&bad_case).unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("case_ref_mismatch")),
        "{b}"
    );

    // Nothing of the above reached the outbox or the peer.
    let id = good["message_id"].as_str().unwrap();
    assert_eq!(th.message(id).await.unwrap().status, 404);
    assert!(read_inbox(&pair.kh_api()).await.is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn messages_outside_any_agreement_are_refused_naming_the_agreement() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    // TH has VN configured as a peer, but Thailand and Viet Nam have no agreement here.
    let (kh, vn) = (Unreachable::new(), Unreachable::new());
    let th_l = bind();
    let th = start(
        settings_for(
            &pki,
            "TH",
            data.path(),
            &th_l,
            &[("KH", kh.addr), ("VN", vn.addr)],
        ),
        th_l,
    )
    .await;
    let th_api = api(&pki, "TH", th.api_addr);
    let r = th_api
        .submit(&referral("TH", "VN", &case_ref("TH", "VN", 1), 1))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "agreement_refused");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no agreement between TH and VN")
    );

    // A type an agreement does not allow from TH.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kh-th.toml"),
        r#"
title = "Synthetic test agreement"
instrument = "test"
year = 2026
parties = ["KH", "TH"]
[[messages]]
type = "referral.notify"
senders = ["KH"]
"#,
    )
    .unwrap();
    let th2_l = bind();
    let mut s = settings_for(&pki, "TH", data.path(), &th2_l, &[("KH", kh.addr)]);
    s.database.url = format!("sqlite://{}", data.path().join("th2.db").display());
    s.agreements.dir = dir.path().to_path_buf();
    let th2 = start(s, th2_l).await;
    let r = api(&pki, "TH", th2.api_addr)
        .submit(&referral("TH", "KH", &case_ref("TH", "KH", 1), 1))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("kh-th") && message.contains("referral.notify"),
        "{message}"
    );
    th.stop().await;
    th2.stop().await;
}

#[tokio::test]
async fn resubmitting_the_same_message_is_idempotent_and_a_reused_id_conflicts() {
    let pair = Pair::manual().await;
    let th = pair.th_api();
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 11), 11);
    let first = th.submit(&msg).await.unwrap();
    let second = th.submit(&msg).await.unwrap();
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(first.body["message_id"], second.body["message_id"]);
    let mut changed = msg.clone();
    changed["payload"]["risk_level"] = json!("high");
    let r = th.submit(&changed).await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "duplicate_message_id");
    let id = msg["message_id"].as_str().unwrap();
    let status = step_one(pair.th_worker(), &th, id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    assert_eq!(read_inbox(&pair.kh_api()).await.len(), 1);
    pair.stop().await;
}

#[tokio::test]
async fn local_api_requires_a_valid_token_and_the_right_role() {
    let pair = Pair::start().await;
    let th = pair.th_api();
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 12), 12);
    let r = th.with_token("not-a-token").submit(&msg).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "unauthenticated");
    let health = th.with_token("").health().await.unwrap();
    assert_eq!(
        (health.status, health.body["node"].as_str()),
        (200, Some("TH"))
    );
    let r = th.get("/v1/nothing-here").await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("no_such_route"))
    );
    let r = th.message("not-a-uuid").await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("bad_message_id"))
    );
    let r = th.inbox(Some("abc"), None).await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("bad_cursor"))
    );
    pair.stop().await;
}

#[tokio::test]
async fn per_case_order_is_kept_while_cases_do_not_block_each_other() {
    let pair = Pair::start().await;
    let th = pair.th_api();
    let mut order: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for i in 0..60 {
        let case = case_ref("TH", "KH", 100 + i % 6);
        // The first message opens the case; the rest update it.
        let msg = if i < 6 {
            referral("TH", "KH", &case, i)
        } else {
            update("TH", "KH", &case, i)
        };
        assert_eq!(th.submit(&msg).await.unwrap().status, 202);
        order
            .entry(case)
            .or_default()
            .push(msg["message_id"].as_str().unwrap().to_string());
    }
    let kh = pair.kh_api();
    eventually("all 60 delivered", WAIT, || async {
        read_inbox(&kh).await.len() == 60
    })
    .await;
    let mut got: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for m in read_inbox(&kh).await {
        got.entry(m["case_ref"].as_str().unwrap().to_string())
            .or_default()
            .push(m["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, order);
    pair.stop().await;
}
