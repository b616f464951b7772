//! A whole case between two real gateways: both sides derive the same state
//! from the messages, and each side refuses what the state does not allow,
//! naming the state and what may come next.

use std::sync::Arc;

use crate::support::*;
use homeward::app::delivery::Worker;
use serde_json::Value;

/// Submits, delivers with one step of the sender's worker; returns the
/// message id.
async fn send((api, worker): (&Api, &Arc<Worker>), msg: Value) -> String {
    let r = api.submit(&msg).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let id = msg["message_id"].as_str().unwrap().to_string();
    let status = step_one(worker, api, &id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    id
}

async fn state(api: &Api, case: &str) -> String {
    let r = api.case(case).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["state"].as_str().unwrap_or("none").to_string()
}

#[tokio::test]
async fn a_case_runs_from_referral_to_closure_and_both_sides_agree() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let (th_sends, kh_sends) = ((&th, pair.th_worker()), (&kh, pair.kh_worker()));
    let case = case_ref("TH", "KH", 42);
    let both = |want: &'static str| {
        let (th, kh, case) = (th.clone(), kh.clone(), case.clone());
        async move {
            assert_eq!(state(&th, &case).await, want, "TH's view");
            assert_eq!(state(&kh, &case).await, want, "KH's view");
        }
    };

    let referral_id = send(th_sends, referral("TH", "KH", &case, 1)).await;
    both("referred").await;
    let ack = envelope(
        "referral.acknowledge",
        "KH",
        "TH",
        &case,
        Some(&referral_id),
        example_payload("referral.acknowledge", |p| p["accepted"] == true),
    );
    send(kh_sends, ack).await;
    both("acknowledged").await;
    send(th_sends, update("TH", "KH", &case, 1)).await;
    both("acknowledged").await;

    let request = send(
        th_sends,
        envelope(
            "family-tracing.request",
            "TH",
            "KH",
            &case,
            None,
            example_payload("family-tracing.request", |_| true),
        ),
    )
    .await;
    both("tracing").await;
    // Return may be proposed while tracing is open.
    let repat = send(
        th_sends,
        envelope(
            "repatriation.request",
            "TH",
            "KH",
            &case,
            None,
            example_payload("repatriation.request", |_| true),
        ),
    )
    .await;
    both("repatriation_proposed").await;
    send(
        kh_sends,
        envelope(
            "family-tracing.result",
            "KH",
            "TH",
            &case,
            Some(&request),
            example_payload("family-tracing.result", |p| p["family_found"] == true),
        ),
    )
    .await;
    both("repatriation_proposed").await;
    send(
        kh_sends,
        envelope(
            "repatriation.confirm",
            "KH",
            "TH",
            &case,
            Some(&repat),
            example_payload("repatriation.confirm", |p| p["decision"] == "accepted"),
        ),
    )
    .await;
    both("repatriation_agreed").await;
    let handover = send(
        th_sends,
        envelope(
            "repatriation.handover",
            "TH",
            "KH",
            &case,
            None,
            example_payload("repatriation.handover", |p| p["record"] == "handover"),
        ),
    )
    .await;
    both("handed_over").await;
    send(
        kh_sends,
        envelope(
            "repatriation.handover",
            "KH",
            "TH",
            &case,
            Some(&handover),
            example_payload("repatriation.handover", |p| {
                p["record"] == "countersignature"
            }),
        ),
    )
    .await;
    both("handed_over").await;
    send(
        kh_sends,
        envelope(
            "reintegration.report",
            "KH",
            "TH",
            &case,
            None,
            example_payload("reintegration.report", |p| p["case_status"] == "open"),
        ),
    )
    .await;
    both("following_up").await;
    send(
        kh_sends,
        envelope(
            "reintegration.report",
            "KH",
            "TH",
            &case,
            None,
            example_payload("reintegration.report", |p| p["case_status"] == "closed"),
        ),
    )
    .await;
    both("closed").await;

    // Nothing may follow a closed case.
    let r = th.submit(&update("TH", "KH", &case, 2)).await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "case_state_conflict");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`closed`")
    );

    let view = kh.case(&case).await.unwrap().body;
    assert_eq!(view["timeline"].as_array().unwrap().len(), 11);
    // Every answer closed its deadline on both sides; the countersignature
    // opened none of its own.
    for api in [&th, &kh] {
        let view = api.case(&case).await.unwrap().body;
        let timers = view["timers"].as_array().unwrap();
        assert_eq!(timers.len(), 4, "{view}");
        assert!(timers.iter().all(|t| t["state"] == "met"), "{view}");
    }
    pair.stop().await;
}

#[tokio::test]
async fn the_sender_refuses_what_the_state_does_not_allow_and_names_what_may_come_next() {
    let pair = Pair::manual().await;
    let th = pair.th_api();
    let th_sends = (&th, pair.th_worker());
    let case = case_ref("TH", "KH", 43);
    // No case yet: only a referral may open one.
    let early = envelope(
        "repatriation.request",
        "TH",
        "KH",
        &case,
        None,
        example_payload("repatriation.request", |_| true),
    );
    let r = th.submit(&early).await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("referral.notify"),
        "{}",
        r.body
    );

    let referral_id = send(th_sends, referral("TH", "KH", &case, 1)).await;
    let r = th.submit(&early).await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`referred`") && message.contains("referral.withdraw"),
        "{message}"
    );

    // A reply must point to a message of the same case.
    let mut stray = update("TH", "KH", &case, 1);
    stray["in_reply_to"] = serde_json::json!(uuid::Uuid::now_v7().to_string());
    let r = th.submit(&stray).await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("bad_in_reply_to")),
        "{}",
        r.body
    );

    // The host country does not acknowledge its own referral.
    let wrong_side = envelope(
        "referral.acknowledge",
        "TH",
        "KH",
        &case,
        Some(&referral_id),
        example_payload("referral.acknowledge", |p| p["accepted"] == true),
    );
    let r = th.submit(&wrong_side).await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("wrong_side")),
        "{}",
        r.body
    );
    let _ = referral_id;
    pair.stop().await;
}

#[tokio::test]
async fn the_receiver_refuses_a_message_its_view_of_the_case_does_not_allow() {
    let pair = Pair::start().await;
    let identity = pair.pki.identity(&pair.pki.paths("TH"));
    let client = pair.kh_peer_client(Some(&identity));
    // A confirm for a case KH has never heard of, straight to KH's peer port.
    let msg = envelope(
        "repatriation.handover",
        "TH",
        "KH",
        &case_ref("TH", "KH", 44),
        None,
        example_payload("repatriation.handover", |p| p["record"] == "handover"),
    );
    let (status, body) = pair.peer_post(&client, &msg).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "case_state_conflict");
    assert!(read_inbox(&pair.kh_api()).await.is_empty());
    pair.stop().await;
}
