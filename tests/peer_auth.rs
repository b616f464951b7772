//! The peer port trusts only certificates from the CA configured for the
//! country they claim, and only lets a node speak for itself.

mod common;

use common::*;

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
    let kh_api = pair.kh_api();
    let (client, base, _) = kh_api.raw();
    let metrics = client
        .get(format!("{base}/metrics"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let th_addrs = (free_addr(), free_addr());
    let vn_addrs = (free_addr(), free_addr());
    // KH's address points at VN's gateway, whose certificate names VN.
    let vn = start(settings(
        &pki,
        "VN",
        data.path(),
        vn_addrs,
        &[("KH", free_addr()), ("TH", th_addrs.0)],
    ))
    .await;
    let mut s = settings(&pki, "TH", data.path(), th_addrs, &[("KH", vn_addrs.0)]);
    s.peers[0].ca = pki.paths("VN").ca_cert;
    let th = start(s).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let id = msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    eventually(
        "a failed attempt",
        std::time::Duration::from_secs(10),
        || async {
            th_api
                .get(&format!("/v1/messages/{id}"))
                .await
                .unwrap()
                .body["last_error"]
                .is_object()
        },
    )
    .await;
    let s = th_api
        .get(&format!("/v1/messages/{id}"))
        .await
        .unwrap()
        .body;
    assert_eq!(s["state"], "delivering", "{s}");
    assert_eq!(s["last_error"]["kind"], "transport", "{s}");
    assert!(read_inbox(&api(&pki, "VN", vn.api_addr)).await.is_empty());
    th.stop().await;
    vn.stop().await;
}
