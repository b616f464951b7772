//! A correction (`referral.update`, reason `correction`) must name the
//! message it corrects, of its own case, and every corrected field must
//! exist in that message. Both gateways apply the rule: the sender at
//! submission, the receiver at its peer port without trusting the sender.

use crate::support::*;
use serde_json::{Value, json};

fn correction(case: &str, in_reply_to: Option<&str>, pointer: &str) -> Value {
    envelope(
        "referral.update",
        "TH",
        "KH",
        case,
        in_reply_to,
        json!({
            "reason": "correction",
            "summary": "The shelter's city was recorded wrongly.",
            "corrections": [
                {"pointer": "/placement/shelter_type", "value": "ngo"},
                {"pointer": pointer, "value": "Synthetic Corrected City", "note": "checked with the shelter"}
            ]
        }),
    )
}

fn id(m: &Value) -> String {
    m["message_id"].as_str().expect("message_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_names_its_message_and_existing_fields_on_both_gateways() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", 1);
    let other_case = case_ref("TH", "KH", 2);
    let referral = referral("TH", "KH", &case, 1);
    let other = crate::support::referral("TH", "KH", &other_case, 2);
    for m in [&referral, &other] {
        assert_eq!(th.submit(m).await.unwrap().status, 202);
        let done = step_one(pair.th_worker(), &th, &id(m)).await;
        assert_eq!(done["state"], "delivered");
    }
    let th_identity = pair.pki.identity(&pair.pki.paths("TH"));
    let peer = pair.kh_peer_client(Some(&th_identity));

    let bad = [
        (
            correction(&case, None, "/placement/city"),
            "correction_target_required",
            "/in_reply_to",
        ),
        (
            correction(&case, Some(&id(&referral)), "/placement/village"),
            "correction_pointer_absent",
            "/payload/corrections/1/pointer",
        ),
        (
            correction(&case, Some(&id(&other)), "/placement/city"),
            "correction_target_unknown",
            "/in_reply_to",
        ),
    ];
    for (message, code, pointer) in &bad {
        // The sender refuses it at submission …
        let r = th.submit(message).await.unwrap();
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["error"]["code"], *code, "{}", r.body);
        assert_eq!(
            r.body["error"]["details"][0]["pointer"], *pointer,
            "{}",
            r.body
        );
        assert_eq!(
            r.body["error"]["details"][0]["keyword"],
            "correction_target"
        );
        let status = th.message(&id(message)).await.unwrap();
        assert_eq!(status.status, 404, "nothing queued at the sender");
        // … and the receiver refuses it too when a sender skips the check.
        let (status, body) = pair.peer_post(&peer, message).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], *code, "{body}");
        assert_eq!(body["error"]["details"][0]["pointer"], *pointer, "{body}");
    }
    assert_eq!(
        read_inbox(&kh).await.len(),
        2,
        "the receiver stored no refused correction"
    );

    let good = correction(&case, Some(&id(&referral)), "/placement/city");
    assert_eq!(th.submit(&good).await.unwrap().status, 202);
    let done = step_one(pair.th_worker(), &th, &id(&good)).await;
    assert_eq!(done["state"], "delivered");

    // Both sides show the corrected document with the original kept.
    for api in [&kh, &th] {
        let view = api.case(&case).await.unwrap();
        assert_eq!(view.status, 200, "{}", view.body);
        let entry = view.body["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["message_id"] == referral["message_id"])
            .expect("the referral is on the timeline")
            .clone();
        assert_eq!(
            entry["corrected_by"],
            json!([{"message_id": id(&good), "pointers": ["/placement/shelter_type", "/placement/city"]}])
        );
        let docs = view.body["corrected_documents"].as_array().unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["message_id"], referral["message_id"]);
        assert_eq!(docs[0]["original"], referral["payload"]);
        assert_eq!(
            docs[0]["corrected"]["placement"]["city"],
            "Synthetic Corrected City"
        );
        assert_eq!(docs[0]["corrected"]["placement"]["shelter_type"], "ngo");
        assert_eq!(
            docs[0]["corrected"]["person"], referral["payload"]["person"],
            "what was not corrected stays"
        );
    }
    // An operator sees which fields were corrected, never the values.
    let operator = kh.with_token(OPERATOR_TOKEN);
    let view = operator.case(&case).await.unwrap();
    assert_eq!(view.status, 200, "{}", view.body);
    assert!(
        view.body.get("corrected_documents").is_none(),
        "{}",
        view.body
    );
    assert!(!view.body.to_string().contains("Synthetic Corrected City"));
    pair.stop().await;
}
