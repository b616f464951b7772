//! Signed envelopes and receipts between real gateways: each side keeps
//! both signatures and the exact bytes they cover, a third party can check
//! them with the countries' CA certificates alone, and every forgery is
//! refused with its code and stored nowhere.

use homeward::signing::{self, Purpose};
use homeward::tls;
use rustls::pki_types::UnixTime;
use serde_json::Value;

use crate::support::*;

fn ca(pki: &Pki, cc: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    tls::load_certs(&pki.paths(cc).ca_cert).expect("CA")
}

#[tokio::test]
async fn envelopes_and_receipts_are_signed_and_kept_on_both_sides_single_and_batch() {
    let pair = Pair::manual().await;
    let th = pair.th_api();
    // One message (the single route), then three at once (the batch route).
    let mut ids = Vec::new();
    let first = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    ids.push(first["message_id"].as_str().unwrap().to_string());
    assert_eq!(th.submit(&first).await.unwrap().status, 202);
    let status = step_one(pair.th_worker(), &th, &ids[0]).await;
    assert_eq!(status["state"], "delivered", "{status}");
    for n in 2..5 {
        let msg = referral("TH", "KH", &case_ref("TH", "KH", n), n);
        ids.push(msg["message_id"].as_str().unwrap().to_string());
        assert_eq!(th.submit(&msg).await.unwrap().status, 202);
    }
    assert_eq!(step(pair.th_worker()).await, 3);
    let (th_ca, kh_ca) = (ca(&pair.pki, "TH"), ca(&pair.pki, "KH"));
    let now = [UnixTime::now()];
    for id in &ids {
        let sent = pair.th.node.store.outbound(id).await.unwrap().unwrap();
        let got = pair.kh.node.store.inbound(id).await.unwrap().unwrap();
        assert_eq!(sent.state.as_str(), "delivered", "{id}");
        // Both sides hold the same signatures and the same receipt bytes.
        let signature = sent.signature.clone().expect("TH signed");
        assert_eq!(got.signature.as_deref(), Some(signature.as_str()), "{id}");
        assert_eq!(sent.receipt.as_deref(), Some(got.receipt.as_str()), "{id}");
        let receipt_signature = sent
            .receipt_signature
            .clone()
            .expect("KH signed its receipt");
        assert_eq!(
            got.receipt_signature.as_deref(),
            Some(receipt_signature.as_str())
        );
        // A third party with the two CA certificates checks both.
        let by = signing::verify(
            &signature,
            Purpose::Envelope,
            got.body.as_bytes(),
            &th_ca,
            &[],
            &now,
            "TH",
        )
        .expect("TH's signature of the envelope holds");
        assert_eq!(by.node, "TH");
        signing::verify(
            &receipt_signature,
            Purpose::Receipt,
            got.receipt.as_bytes(),
            &kh_ca,
            &[],
            &now,
            "KH",
        )
        .expect("KH's signature of the receipt holds");
        // The receipt names the signature it answers.
        let receipt: Value = serde_json::from_str(&got.receipt).unwrap();
        assert_eq!(receipt["signature_sha256"], signing::digest(&signature));
        // And the local API shows them.
        let view = th.message(id).await.unwrap().body;
        assert_eq!(view["signature"], signature.as_str());
        assert_eq!(view["receipt_signature"], receipt_signature.as_str());
    }
    // Neither signature holds for the other's bytes.
    let got = pair.kh.node.store.inbound(&ids[0]).await.unwrap().unwrap();
    let other = pair.kh.node.store.inbound(&ids[1]).await.unwrap().unwrap();
    assert!(
        signing::verify(
            other.signature.as_deref().unwrap(),
            Purpose::Envelope,
            got.body.as_bytes(),
            &th_ca,
            &[],
            &now,
            "TH"
        )
        .is_err()
    );
    pair.stop().await;
}

/// POSTs `text` to KH's peer port as TH, with `signature` if any.
async fn post_signed(pair: &Pair, text: &str, signature: Option<&str>) -> (u16, Value) {
    let th = pair.pki.identity(&pair.pki.paths("TH"));
    let client = pair.kh_peer_client(Some(&th));
    let mut request = client
        .post(pair.kh_peer_url())
        .header("content-type", "application/json")
        .body(text.to_string());
    if let Some(jws) = signature {
        request = request.header("homeward-signature", jws);
    }
    let resp = request.send().await.expect("peer port answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn forged_signatures_are_refused_with_their_code_and_nothing_is_stored() {
    let pair = Pair::manual().await;
    let pki = &pair.pki;
    let th_signer = pki.signer(&pki.paths("TH"));
    let vn_signer = pki.signer(&pki.paths("VN"));
    let rogue_signer = pki.signer(&pki.rogue_th());
    let expired = pki.expired_signer("TH");
    let mut n = 10;
    let mut next = || {
        n += 1;
        referral("TH", "KH", &case_ref("TH", "KH", n), n).to_string()
    };
    // A header whose x5c is TH's TLS certificate, signed by TH's signing key.
    let tls_cert = tls::load_certs(&pki.paths("TH").peer_cert).unwrap();
    let tls_x5c = |text: &str| {
        use base64::Engine;
        let real = th_signer.sign(Purpose::Envelope, text.as_bytes());
        let sig = real.rsplit('.').next().unwrap();
        let header = serde_json::json!({"alg": "EdDSA", "typ": "homeward-envelope+jws",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(tls_cert[0].as_ref())]});
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        format!("{header}..{sig}")
    };
    type Forge<'a> = Box<dyn Fn(&str) -> (String, String) + 'a>;
    let cases: Vec<(&str, u16, &str, Forge)> = vec![
        (
            "one byte changed after signing",
            403,
            "bad_signature",
            Box::new(|t: &str| {
                let jws = th_signer.sign(Purpose::Envelope, t.as_bytes());
                // Still the same JSON, but not the same bytes.
                (format!("{t} "), jws)
            }),
        ),
        (
            "a receipt's signature",
            403,
            "bad_signature",
            Box::new(|t: &str| {
                (
                    t.to_string(),
                    th_signer.sign(Purpose::Receipt, t.as_bytes()),
                )
            }),
        ),
        (
            "another country's key",
            403,
            "unknown_signer",
            Box::new(|t: &str| {
                (
                    t.to_string(),
                    vn_signer.sign(Purpose::Envelope, t.as_bytes()),
                )
            }),
        ),
        (
            "a rogue CA's certificate for TH",
            403,
            "unknown_signer",
            Box::new(|t: &str| {
                (
                    t.to_string(),
                    rogue_signer.sign(Purpose::Envelope, t.as_bytes()),
                )
            }),
        ),
        (
            "an expired signing certificate",
            403,
            "unknown_signer",
            Box::new(|t: &str| (t.to_string(), expired.sign(Purpose::Envelope, t.as_bytes()))),
        ),
        (
            "TH's TLS certificate in x5c",
            403,
            "bad_signature",
            Box::new(|t: &str| (t.to_string(), tls_x5c(t))),
        ),
        (
            "not a JWS",
            403,
            "bad_signature",
            Box::new(|t: &str| (t.to_string(), "not-a-jws".to_string())),
        ),
    ];
    for (what, status, code, forge) in &cases {
        let (text, jws) = forge(&next());
        let id = serde_json::from_str::<Value>(&text).unwrap()["message_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (got, body) = post_signed(&pair, &text, Some(&jws)).await;
        assert_eq!(got, *status, "{what}: {body}");
        assert_eq!(body["error"]["code"], *code, "{what}: {body}");
        assert!(
            pair.kh.node.store.inbound(&id).await.unwrap().is_none(),
            "{what}: stored"
        );
    }
    // The control: TH's own signature of the bytes sent is taken.
    let text = next();
    let jws = th_signer.sign(Purpose::Envelope, text.as_bytes());
    let (got, receipt) = post_signed(&pair, &text, Some(&jws)).await;
    assert_eq!(got, 200, "{receipt}");
    assert_eq!(receipt["signature_sha256"], signing::digest(&jws));
    // Counted by code.
    let metrics = pair
        .kh_api()
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .unwrap()
        .text;
    assert!(
        metrics.contains(
            r#"homeward_signature_failures_total{what="envelope",code="unknown_signer"} 3"#
        ),
        "{metrics}"
    );
    pair.stop().await;
}

#[tokio::test]
async fn a_receipt_whose_signature_does_not_hold_is_not_counted_as_delivery() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    // KH signs its receipts with a key no CA TH trusts vouches for: a
    // certificate for KH from the rogue CA's hierarchy is what we have.
    let rogue = homeward::tls::pki::generate_country("KH", "rogue", 30).unwrap();
    let rogue_dir = data.path().join("rogue-kh");
    let rogue_paths = homeward::tls::pki::write_country(&rogue_dir, &rogue).unwrap();
    kh_settings.tls.sign_cert = Some(rogue_paths.sign_cert);
    kh_settings.tls.sign_key = Some(rogue_paths.sign_key);
    let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    let (kh, _kh_worker) = start_manual(kh_settings, kh_l).await;
    let (th, th_worker) = start_manual(th_settings, th_l).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let id = msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    let status = step_one(&th_worker, &th_api, &id).await;
    // KH has it; TH has no proof, so it is not delivered and will retry.
    assert!(kh.node.store.inbound(&id).await.unwrap().is_some());
    assert_ne!(status["state"], "delivered", "{status}");
    assert!(status["next_attempt_at"].is_string(), "retried: {status}");
    assert_eq!(status["last_error"]["kind"], "receipt_invalid", "{status}");
    assert!(status["receipt"].is_null(), "{status}");
    let metrics = th_api
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .unwrap()
        .text;
    assert!(
        metrics.contains(
            r#"homeward_signature_failures_total{what="receipt",code="unknown_signer"} 1"#
        ),
        "{metrics}"
    );
    th.stop().await;
    kh.stop().await;
}

/// The shipped agreements in a directory of their own, KH–TH's with
/// `[signing] required = true`.
fn agreements_requiring_signatures(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("agreements-signed");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(agreements_dir()).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "kh-th.toml" {
            text.push_str("\n[signing]\nrequired = true\n");
        }
        std::fs::write(out.join(path.file_name().unwrap()), text).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_the_agreement_requires_signatures_an_unsigned_peer_is_refused_and_an_unsigning_node_does_not_start()
 {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let signed = agreements_requiring_signatures(data.path());
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_settings.agreements.dir = signed.clone();
    // TH has not moved: it signs nothing, under the agreement as it was.
    let mut th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    th_settings.tls.sign_cert = None;
    th_settings.tls.sign_key = None;

    // A node that must sign but cannot is refused at start, naming the agreement.
    let mut unsigning = kh_settings.clone();
    unsigning.tls.sign_cert = None;
    unsigning.tls.sign_key = None;
    let spare = bind();
    unsigning.peer_api.listen = spare.peer_addr();
    unsigning.local_api.listen = spare.api_addr();
    unsigning.database.url = format!("sqlite://{}", data.path().join("spare.db").display());
    let refused =
        homeward::gateway::Gateway::build_with(unsigning, spare, homeward::clock::system())
            .await
            .err()
            .expect("refused");
    assert!(refused.to_string().contains("kh-th"), "{refused}");

    let (kh, _kh_worker) = start_manual(kh_settings, kh_l).await;
    let (th, th_worker) = start_manual(th_settings, th_l).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let m = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let id = m["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&m).await.unwrap().status, 202);
    let s = step_one(&th_worker, &th_api, &id).await;
    assert_eq!(s["state"], "rejected", "{s}");
    assert!(s.to_string().contains("signature_required"), "{s}");
    assert!(kh.node.store.inbound(&id).await.unwrap().is_none());
    th.stop().await;
    kh.stop().await;
}
