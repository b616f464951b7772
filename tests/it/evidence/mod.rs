//! Evidence: a receipt is kept as the receiver's exact bytes; a finished
//! case between two real gateways is exported by either side (library,
//! route and CLI) and verified with the CA certificates alone; every kind
//! of tampering is named by its part; time is the receipts' `received_at`.

mod export;
mod tamper;
mod validity;

use std::sync::Arc;

use homeward::app::delivery::Worker;
use homeward::evidence::bundle::{self as format, Manifest};
use homeward::evidence::{self, Bundle, Trust, VerifyError};
use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_keeps_the_receipt_byte_for_byte_on_the_single_and_batch_paths() {
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tempdir");
    let (th_l, kh_l) = (bind(), bind());
    let kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    let (kh, _kh_worker) = start_manual(kh_settings, kh_l).await;
    let (th, th_worker) = start_manual(th_settings, th_l).await;
    let api = api(&pki, "TH", th.api_addr);
    // One message alone, then three claimed together (one batch).
    for group in [1..2, 2..5] {
        let mut ids = Vec::new();
        for n in group.clone() {
            let m = referral("TH", "KH", &case_ref("TH", "KH", n), n);
            assert_eq!(api.submit(&m).await.unwrap().status, 202);
            ids.push(m["message_id"].as_str().unwrap().to_string());
        }
        assert_eq!(th_worker.step().await.expect("one step"), ids.len());
        for id in &ids {
            let sent = th
                .node
                .store
                .outbound(id)
                .await
                .unwrap()
                .expect("outbox row");
            assert_eq!(sent.state.as_str(), "delivered");
            let issued = kh.node.store.inbound(id).await.unwrap().expect("inbox row");
            let kept = sent.receipt.expect("receipt kept");
            assert_eq!(
                kept,
                issued.receipt,
                "the receipt kept after {} delivery is the receiver's exact bytes",
                if ids.len() == 1 {
                    "a single"
                } else {
                    "a batch"
                }
            );
            // The keys in the receiver's order, not re-serialized (sorted).
            assert!(kept.starts_with("{\"message_id\":"), "{kept}");
        }
    }
    th.stop().await;
    kh.stop().await;
}

/// Submits `msg` through `api` and delivers it with one step of `worker`.
pub(super) async fn send(api: &Api, worker: &Arc<Worker>, msg: Value) -> String {
    let r = api.submit(&msg).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let id = msg["message_id"].as_str().unwrap().to_string();
    let status = step_one(worker, api, &id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    id
}

/// A case that went both ways and was answered each time it had to be:
/// TH's referral and KH's acknowledgement, TH's tracing request and KH's
/// result.
pub(super) async fn finished_case(pair: &Pair, serial: usize) -> String {
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", serial);
    let referral = send(&th, pair.th_worker(), referral("TH", "KH", &case, serial)).await;
    let ack = example_payload("referral.acknowledge", |p| p["accepted"] == true);
    let ack = envelope(
        "referral.acknowledge",
        "KH",
        "TH",
        &case,
        Some(&referral),
        ack,
    );
    send(&kh, pair.kh_worker(), ack).await;
    let request = example_payload("family-tracing.request", |_| true);
    let request = envelope("family-tracing.request", "TH", "KH", &case, None, request);
    let request = send(&th, pair.th_worker(), request).await;
    let result = example_payload("family-tracing.result", |_| true);
    let result = envelope(
        "family-tracing.result",
        "KH",
        "TH",
        &case,
        Some(&request),
        result,
    );
    send(&kh, pair.kh_worker(), result).await;
    case
}

pub(super) async fn export(gateway: &homeward::gateway::RunningGateway, case: &str) -> Bundle {
    let node = &gateway.node;
    let now = homeward::clock::unix_ms(time::OffsetDateTime::now_utc());
    let credentials = node.credentials();
    let signer = credentials.signer.as_ref().expect("the node signs");
    evidence::export(&node.store, signer, &node.country, case, now)
        .await
        .expect("the case exports")
}

pub(super) fn trust(pki: &Pki) -> Trust {
    Trust::load_dir(pki.path()).expect("the test PKI's CAs")
}

/// The part a bundle's verification names, and its code.
pub(super) fn broken(bundle: &Bundle, trust: &Trust) -> (String, &'static str) {
    match evidence::verify(&bundle.to_json(), trust) {
        Err(VerifyError::Broken { part, code, .. }) => (part, code),
        other => panic!("expected a broken part, got {other:?}"),
    }
}

/// The manifest, decoded.
pub(super) fn manifest(bundle: &Bundle) -> Manifest {
    let bytes = format::decode(bundle.manifest.as_deref().unwrap()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// One byte of a base64 part changed.
pub(super) fn flip_b64(part: &mut Option<String>) {
    let mut bytes = format::decode(part.as_deref().unwrap()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    *part = Some(format::encode(&bytes));
}

/// One character in the middle of a text part (a signature) changed.
pub(super) fn flip_text(part: &mut String) {
    let at = part.len() / 2;
    let c = part.as_bytes()[at];
    let to = if c == b'A' { "B" } else { "A" };
    part.replace_range(at..=at, to);
}

/// `homeward ARGS...`: its exit code and everything it printed.
pub(super) fn homeward(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
