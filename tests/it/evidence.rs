//! A receipt is evidence: the sender keeps the exact bytes the receiver
//! issued, whether the message went alone or in a batch.

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
