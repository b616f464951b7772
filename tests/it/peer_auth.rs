//! The peer port trusts only certificates from the CA configured for the
//! country they claim, and only lets a node speak for itself.

use crate::support::*;

#[tokio::test]
async fn certificate_from_an_unknown_ca_is_refused_and_nothing_stored() {
    let pair = Pair::start().await;
    let rogue = pair.pki.identity(&pair.pki.rogue_th());
    assert_eq!(
        rogue.node().as_deref(),
        Some("TH"),
        "the rogue certificate claims to be TH"
    );
    let client = pair.kh_peer_client(Some(&rogue));
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let result = client.post(pair.kh_peer_url()).json(&msg).send().await;
    assert!(
        result.is_err(),
        "handshake must fail, got {:?}",
        result.map(|r| r.status())
    );
    assert!(read_inbox(&pair.kh_api()).await.is_empty());
    // Operators see the refusal, by reason.
    let metrics = pair
        .kh_api()
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .unwrap();
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    let metrics = metrics.text;
    assert!(
        metrics.contains(
            "homeward_tls_handshake_failures_total{port=\"peer\",reason=\"unknown_issuer\"} 1"
        ),
        "{metrics}"
    );
    pair.stop().await;
}

#[tokio::test]
async fn connection_without_a_client_certificate_is_refused() {
    let pair = Pair::start().await;
    let client = pair.kh_peer_client(None);
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let result = client.post(pair.kh_peer_url()).json(&msg).send().await;
    assert!(
        result.is_err(),
        "handshake must fail, got {:?}",
        result.map(|r| r.status())
    );
    assert!(read_inbox(&pair.kh_api()).await.is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn valid_th_certificate_cannot_send_as_vn() {
    let pair = Pair::start().await;
    let th = pair.pki.identity(&pair.pki.paths("TH"));
    let client = pair.kh_peer_client(Some(&th));
    let msg = referral("VN", "KH", &case_ref("VN", "KH", 1), 1);
    let (status, body) = pair.peer_post(&client, &msg).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "sender_mismatch");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identifies node TH")
    );
    assert!(read_inbox(&pair.kh_api()).await.is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn peer_refuses_messages_for_another_node_or_outside_the_agreement() {
    let pair = Pair::start().await;
    let th = pair.pki.identity(&pair.pki.paths("TH"));
    let client = pair.kh_peer_client(Some(&th));
    let msg = referral("TH", "MY", &case_ref("TH", "MY", 1), 1);
    let (status, body) = pair.peer_post(&client, &msg).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "wrong_receiver");

    let mut bad = referral("TH", "KH", &case_ref("TH", "KH", 2), 2);
    bad["payload"]["person"]["sex"] = serde_json::json!("?");
    let (status, body) = pair.peer_post(&client, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["pointer"],
        "/payload/person/sex"
    );
    assert!(read_inbox(&pair.kh_api()).await.is_empty());
    pair.stop().await;
}

#[tokio::test]
async fn sender_refuses_a_server_that_is_not_the_expected_node() {
    // TH's gateway is told KH lives at VN's... here: at TH's own peer port.
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (th_l, vn_l) = (bind(), bind());
    let kh = Unreachable::new();
    // KH's address points at VN's gateway, whose certificate names VN.
    let vn_settings = settings_for(
        &pki,
        "VN",
        data.path(),
        &vn_l,
        &[("KH", kh.addr), ("TH", th_l.peer_addr())],
    );
    let mut s = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", vn_l.peer_addr())]);
    s.peers[0].ca = pki.paths("VN").ca_cert;
    let vn = start(vn_settings, vn_l).await;
    let (th, th_worker) = start_manual(s, th_l).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let id = msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    // One attempt, which fails: recorded as a retry.
    assert_eq!(step(&th_worker).await, 1, "a failed attempt");
    let s = th_api.message(&id).await.unwrap().body;
    assert!(s["last_error"].is_object(), "{s}");
    assert_eq!(s["state"], "delivering", "{s}");
    assert_eq!(s["last_error"]["kind"], "transport", "{s}");
    assert!(read_inbox(&api(&pki, "VN", vn.api_addr)).await.is_empty());
    th.stop().await;
    vn.stop().await;
}

#[tokio::test]
async fn a_batch_is_checked_message_by_message_and_resends_get_the_same_receipts() {
    let pair = Pair::start().await;
    let th = pair.pki.identity(&pair.pki.paths("TH"));
    let client = pair.kh_peer_client(Some(&th));
    let url = pair.kh_peer_batch_url();
    let good = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let as_vn = referral("VN", "KH", &case_ref("VN", "KH", 2), 2);
    let early = update("TH", "KH", &case_ref("TH", "KH", 3), 3);
    let texts: Vec<String> = [&good, &as_vn, &early]
        .iter()
        .map(|m| serde_json::to_string(m).unwrap())
        .collect();
    let post = || async {
        let resp = client
            .post(&url)
            .json(&serde_json::json!({ "messages": texts }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<serde_json::Value>().await.unwrap()
    };
    let first = post().await;
    let r = first["results"].as_array().unwrap();
    assert_eq!(r[0]["status"], 200, "{first}");
    assert_eq!(r[0]["receipt"]["message_id"], good["message_id"]);
    assert_eq!(
        (r[1]["status"].as_u64(), r[1]["error"]["code"].as_str()),
        (Some(403), Some("sender_mismatch"))
    );
    assert_eq!(
        (r[2]["status"].as_u64(), r[2]["error"]["code"].as_str()),
        (Some(409), Some("case_state_conflict"))
    );
    let again = post().await;
    assert_eq!(
        again["results"][0], first["results"][0],
        "a resend gets the same receipt"
    );
    let inbox = read_inbox(&pair.kh_api()).await;
    assert_eq!(inbox.len(), 1);
    let resp = client
        .post(&url)
        .json(&serde_json::json!({ "messages": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    pair.stop().await;
}
