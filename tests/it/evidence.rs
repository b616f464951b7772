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

// Evidence bundles: a finished case between two real gateways, exported
// by either side (library, route and CLI), verified with the CA
// certificates alone; every kind of tampering named by its part.

use std::sync::Arc;

use homeward::app::delivery::Worker;
use homeward::evidence::bundle::{self as format, Manifest};
use homeward::evidence::{self, Bundle, Trust, VerifyError};
use homeward::signing::{Purpose, Signer};
use serde_json::Value;

/// Submits `msg` through `api` and delivers it with one step of `worker`.
async fn send(api: &Api, worker: &Arc<Worker>, msg: Value) -> String {
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
async fn finished_case(pair: &Pair, serial: usize) -> String {
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

async fn export(gateway: &homeward::gateway::RunningGateway, case: &str) -> Bundle {
    let node = &gateway.node;
    let now = homeward::clock::unix_ms(time::OffsetDateTime::now_utc());
    let credentials = node.credentials();
    let signer = credentials.signer.as_ref().expect("the node signs");
    evidence::export(&node.store, signer, &node.country, case, now)
        .await
        .expect("the case exports")
}

fn trust(pki: &Pki) -> Trust {
    Trust::load_dir(pki.path()).expect("the test PKI's CAs")
}

/// The part a bundle's verification names, and its code.
fn broken(bundle: &Bundle, trust: &Trust) -> (String, &'static str) {
    match evidence::verify(&bundle.to_json(), trust) {
        Err(VerifyError::Broken { part, code, .. }) => (part, code),
        other => panic!("expected a broken part, got {other:?}"),
    }
}

/// The manifest, decoded.
fn manifest(bundle: &Bundle) -> Manifest {
    let bytes = format::decode(bundle.manifest.as_deref().unwrap()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// One byte of a base64 part changed.
fn flip_b64(part: &mut Option<String>) {
    let mut bytes = format::decode(part.as_deref().unwrap()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    *part = Some(format::encode(&bytes));
}

/// One character in the middle of a text part (a signature) changed.
fn flip_text(part: &mut String) {
    let at = part.len() / 2;
    let c = part.as_bytes()[at];
    let to = if c == b'A' { "B" } else { "A" };
    part.replace_range(at..=at, to);
}

#[tokio::test]
async fn a_finished_case_exports_from_either_side_and_verifies_offline() {
    let pair = Pair::manual().await;
    let case = finished_case(&pair, 1).await;
    let trust = trust(&pair.pki);
    for (side, gateway) in [("TH", &pair.th), ("KH", &pair.kh)] {
        let bundle = export(gateway, &case).await;
        let report = evidence::verify(&bundle.to_json(), &trust)
            .unwrap_or_else(|e| panic!("{side}'s bundle: {e}"));
        assert!(report.verified(), "{report}");
        assert_eq!(report.exported_by, side);
        let kinds: Vec<&str> = report
            .messages
            .iter()
            .map(|m| m.message_type.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "referral.notify",
                "referral.acknowledge",
                "family-tracing.request",
                "family-tracing.result"
            ],
            "{side}"
        );
        for m in &report.messages {
            assert_eq!(m.signed_by.as_ref(), Some(&m.from), "{report}");
            assert_eq!(m.receipt_signed_by.as_ref(), Some(&m.to), "{report}");
        }
        // Both answers came, in time, by the receipts' own deadlines.
        for (asked, answer) in [(0, 1), (2, 3)] {
            let a = report.messages[asked]
                .answer
                .as_ref()
                .expect("an answer was due");
            let done = a.answered.as_ref().expect("answered");
            assert_eq!((done.by, done.in_time), (answer, true), "{report}");
        }
        assert!(report.audit_records >= 2, "{report}");
    }
    // The route gives an admin the same bundle, and nobody else any.
    let path = format!("/v1/cases/{case}/evidence");
    let admin = pair.kh_api().with_token(ADMIN_TOKEN);
    let r = admin.get(&path).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let served: Bundle = serde_json::from_value(r.body).unwrap();
    assert!(
        evidence::verify(&served.to_json(), &trust)
            .unwrap()
            .verified()
    );
    assert_eq!(served.messages.len(), 4);
    assert_eq!(pair.kh_api().get(&path).await.unwrap().status, 403);
    let r = admin
        .get("/v1/cases/TH-KH-2026-009999/evidence")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    // Each export is in the audit log, against the case.
    let audit = admin.audit(Some(&case)).await.unwrap();
    let exports: Vec<&Value> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "evidence.export")
        .collect();
    assert_eq!(exports.len(), 2, "{}", audit.body);
    assert_eq!(exports[0]["result"], "ok");
    assert_eq!(exports[1]["result"], "refused:403");
    pair.stop().await;
}

#[tokio::test]
async fn one_changed_byte_in_any_part_is_named() {
    let pair = Pair::manual().await;
    let case = finished_case(&pair, 2).await;
    let trust = trust(&pair.pki);
    let good = export(&pair.th, &case).await;
    type Tamper = fn(&mut Bundle);
    let cases: [(&str, Tamper); 9] = [
        ("messages[1].envelope", |b| {
            flip_b64(&mut b.messages[1].envelope)
        }),
        ("messages[1].signature", |b| {
            flip_text(b.messages[1].signature.as_mut().unwrap())
        }),
        ("messages[1].receipt", |b| {
            flip_b64(&mut b.messages[1].receipt)
        }),
        ("messages[1].receipt_signature", |b| {
            flip_text(b.messages[1].receipt_signature.as_mut().unwrap())
        }),
        ("certificates[0]", |b| {
            let mut c = Some(b.certificates[0].clone());
            flip_b64(&mut c);
            b.certificates[0] = c.unwrap();
        }),
        ("audit[0]", |b| {
            let mut a = Some(b.audit[0].clone());
            flip_b64(&mut a);
            b.audit[0] = a.unwrap();
        }),
        ("manifest", |b| flip_b64(&mut b.manifest)),
        ("manifest", |b| {
            flip_text(b.manifest_signature.as_mut().unwrap())
        }),
        ("messages[1].receipt", |b| b.messages[1].receipt = None),
    ];
    for (want, tamper) in cases {
        let mut bad = good.clone();
        tamper(&mut bad);
        let (part, code) = broken(&bad, &trust);
        assert!(
            part.starts_with(want),
            "expected {want}, got {part} ({code})"
        );
    }
    pair.stop().await;
}

/// TH re-seals a bundle it changed: its manifest signature holds, so what
/// catches the change is the checks that do not trust the exporter.
fn reseal(bundle: &mut Bundle, manifest: Manifest, signer: &Signer) {
    bundle.seal(manifest, signer);
}

#[tokio::test]
async fn a_dropped_or_reordered_message_or_another_countrys_signature_is_caught() {
    let pair = Pair::manual().await;
    let case = finished_case(&pair, 3).await;
    let trust = trust(&pair.pki);
    let th = pair.pki.signer(&pair.pki.paths("TH"));
    let good = export(&pair.th, &case).await;

    // A message dropped: missing from the bundle; with the manifest fixed
    // and signed again by someone else, the signature is not TH's; signed
    // by TH itself, the answer replies to a message no longer there.
    let mut dropped = good.clone();
    dropped.messages.remove(2);
    assert_eq!(
        broken(&dropped, &trust),
        ("messages[2].envelope".into(), "digest_mismatch")
    );
    let mut m = manifest(&good);
    m.messages.remove(2);
    let mut by_vn = dropped.clone();
    reseal(
        &mut by_vn,
        m.clone(),
        &pair.pki.signer(&pair.pki.paths("VN")),
    );
    assert_eq!(broken(&by_vn, &trust).0, "manifest_signature");
    let mut by_th = dropped.clone();
    reseal(&mut by_th, m, &th);
    assert_eq!(
        broken(&by_th, &trust),
        ("messages[2]".into(), "out_of_order")
    );

    // Two messages swapped: their digests first; re-signed, the order.
    let mut swapped = good.clone();
    swapped.messages.swap(0, 1);
    assert_eq!(broken(&swapped, &trust).0, "messages[0].envelope");
    let mut m = manifest(&good);
    m.messages.swap(0, 1);
    reseal(&mut swapped, m, &th);
    assert_eq!(
        broken(&swapped, &trust),
        ("messages[0]".into(), "out_of_order")
    );

    // The referral signed with VN's key instead of TH's, its certificate
    // listed and the manifest signed again.
    let mut forged = good.clone();
    let envelope = format::decode(good.messages[0].envelope.as_deref().unwrap()).unwrap();
    let vn = pair.pki.signer(&pair.pki.paths("VN"));
    forged.messages[0].signature = Some(vn.sign(Purpose::Envelope, &envelope));
    forged
        .certificates
        .extend(vn.chain().iter().map(|c| format::encode(c.as_ref())));
    reseal(&mut forged, manifest(&good), &th);
    assert_eq!(
        broken(&forged, &trust),
        ("messages[0].signature".into(), "unknown_signer")
    );
    pair.stop().await;
}

/// A referral TH sent and KH received at `received_at`, each signed by the
/// given signers, in a bundle TH exported now and sealed with `seal`.
fn signed_long_ago(th: &Signer, kh: &Signer, received_at: i64, seal: &Signer) -> Bundle {
    let case = case_ref("TH", "KH", 90);
    let text = referral("TH", "KH", &case, 90).to_string();
    let id = serde_json::from_str::<Value>(&text).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let signature = th.sign(Purpose::Envelope, text.as_bytes());
    let receipt = homeward::protocol::Receipt {
        message_id: id.clone(),
        receiver: "KH".into(),
        received_at: homeward::clock::rfc3339_ms(received_at),
        envelope_sha256: format::sha256_hex(text.as_bytes()),
        answer_due: None,
        signature_sha256: Some(homeward::signing::digest(&signature)),
    };
    let receipt = serde_json::to_string(&receipt).unwrap();
    let parts = format::MessageParts {
        envelope: Some(format::encode(text.as_bytes())),
        signature: Some(signature),
        receipt_signature: Some(kh.sign(Purpose::Receipt, receipt.as_bytes())),
        receipt: Some(format::encode(receipt.as_bytes())),
    };
    let certificates = [th, kh, seal]
        .iter()
        .flat_map(|s| s.chain())
        .map(|c| format::encode(c.as_ref()))
        .collect();
    let mut bundle = Bundle::unsealed(vec![parts], certificates, Vec::new());
    let now = homeward::clock::unix_ms(time::OffsetDateTime::now_utc());
    bundle.seal(
        Manifest {
            format: format::FORMAT.into(),
            version: format::VERSION,
            case_ref: case,
            exported_by: "TH".into(),
            exported_at: homeward::clock::rfc3339_ms(now),
            messages: vec![format::ManifestMessage {
                message_id: id,
                seq: 1,
                direction: format::Direction::Sent,
                envelope: None,
                signature: None,
                receipt: None,
                receipt_signature: None,
            }],
            certificates: Vec::new(),
            audit: Vec::new(),
            undelivered: Vec::new(),
        },
        seal,
    );
    bundle
}

const DAY_MS: i64 = 86_400_000;

#[test]
fn a_bundle_stays_verifiable_after_its_certificates_expire() {
    let pki = Pki::new();
    let trust = trust(&pki);
    // Both signing certificates were valid from 30 days ago to yesterday.
    let (th_then, kh_then) = (pki.expired_signer("TH"), pki.expired_signer("KH"));
    let th_now = pki.signer(&pki.paths("TH"));
    let now = homeward::clock::unix_ms(time::OffsetDateTime::now_utc());
    let bundle = signed_long_ago(&th_then, &kh_then, now - 10 * DAY_MS, &th_now);
    let report = evidence::verify(&bundle.to_json(), &trust).expect("judged at received_at");
    assert!(report.verified(), "{report}");
    assert_eq!(report.messages[0].signed_by.as_deref(), Some("TH"));
    // Judged today, the same signature is refused: the certificate expired.
    let envelope = format::decode(bundle.messages[0].envelope.as_deref().unwrap()).unwrap();
    let th_ca = homeward::tls::load_certs(&pki.paths("TH").ca_cert).unwrap();
    let today = homeward::signing::verify(
        bundle.messages[0].signature.as_deref().unwrap(),
        Purpose::Envelope,
        &envelope,
        &th_ca,
        &[],
        &[rustls::pki_types::UnixTime::now()],
        "TH",
    );
    assert_eq!(today.unwrap_err().code(), "unknown_signer");
    // A receipt dated after the certificates expired does not pass.
    let late = signed_long_ago(&th_then, &kh_then, now, &th_now);
    assert_eq!(
        broken(&late, &trust),
        ("messages[0].receipt_signature".into(), "unknown_signer")
    );
}

/// `homeward ARGS...`: its exit code and everything it printed.
fn homeward(args: &[&std::ffi::OsStr]) -> (i32, String) {
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

#[tokio::test]
async fn the_cli_exports_and_verifies_with_its_exit_codes() {
    use std::ffi::OsStr;
    let pair = Pair::manual().await;
    let case = finished_case(&pair, 4).await;
    let dir = tempfile::tempdir().unwrap();
    // KH's configuration, as its gateway runs with it.
    let kh_settings = settings(
        &pair.pki,
        "KH",
        pair.data.path(),
        (pair.kh.peer_addr, pair.kh.api_addr),
        &[("TH", pair.th.peer_addr)],
    );
    let config = dir.path().join("kh.toml");
    std::fs::write(&config, toml::to_string(&kh_settings).unwrap()).unwrap();
    let out = dir.path().join("bundle.json");
    let export = |case: &str| {
        homeward(&[
            OsStr::new("evidence"),
            OsStr::new("export"),
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--case"),
            OsStr::new(case),
            OsStr::new("--out"),
            out.as_os_str(),
        ])
    };
    let verify = |file: &std::path::Path, trust: &std::path::Path| {
        homeward(&[
            OsStr::new("evidence"),
            OsStr::new("verify"),
            file.as_os_str(),
            OsStr::new("--trust"),
            trust.as_os_str(),
        ])
    };
    let (code, text) = export(&case);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("4 message(s)"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the bundle holds personal data: {mode:o}");
    }
    let (code, text) = verify(&out, pair.pki.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("VERIFIED") && text.contains("family-tracing.result"),
        "{text}"
    );

    // An unknown case: refused, named.
    let (code, text) = export("TH-KH-2026-009999");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("TH-KH-2026-009999"), "{text}");
    // Both exports are in KH's audit log, by the CLI.
    let admin = pair.kh_api().with_token(ADMIN_TOKEN);
    for (case, result) in [
        (case.as_str(), "ok"),
        ("TH-KH-2026-009999", "refused:not_found"),
    ] {
        let audit = admin.audit(Some(case)).await.unwrap();
        let by_cli: Vec<&Value> = audit.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "evidence.export" && r["actor"] == "cli")
            .collect();
        assert_eq!(by_cli.len(), 1, "{}", audit.body);
        assert_eq!(by_cli[0]["result"], result, "{}", audit.body);
    }

    // A changed byte: 1, naming the part.
    let good: Bundle = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mut bad = good.clone();
    flip_b64(&mut bad.messages[1].receipt);
    let file = dir.path().join("bad.json");
    std::fs::write(&file, bad.to_json()).unwrap();
    let (code, text) = verify(&file, pair.pki.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("messages[1].receipt: "), "{text}");
    // Parts missing: 1, naming the first.
    let mut doc: Value = serde_json::from_slice(&good.to_json()).unwrap();
    doc.as_object_mut().unwrap().remove("messages");
    std::fs::write(&file, doc.to_string()).unwrap();
    let (code, text) = verify(&file, pair.pki.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("messages[0]: listed in the manifest"),
        "{text}"
    );
    // Not a bundle, another version, no such file, an empty trust
    // directory: 2.
    let empty = tempfile::tempdir().unwrap();
    for (content, why) in [
        ("not json at all".to_string(), "not JSON"),
        (
            r#"{"format": "homeward-evidence", "version": 7}"#.to_string(),
            "version 7",
        ),
    ] {
        std::fs::write(&file, content).unwrap();
        let (code, text) = verify(&file, pair.pki.path());
        assert_eq!(code, 2, "{text}");
        assert!(text.contains(why), "{text}");
    }
    let (code, text) = verify(&dir.path().join("nothing.json"), pair.pki.path());
    assert_eq!(code, 2, "{text}");
    let (code, text) = verify(&out, empty.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no CA certificate"), "{text}");
    pair.stop().await;
}

/// `cert`'s PEM text.
fn pem(cert: &rustls::pki_types::CertificateDer<'_>) -> String {
    let b64 = format::encode(cert.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn a_crl_revokes_a_signature_made_after_the_revocation_not_one_made_before() {
    use std::ffi::OsStr;
    let pair = Pair::manual().await;
    let case = finished_case(&pair, 5).await;
    let dir = tempfile::tempdir().unwrap();
    // TH's signing certificate revoked a minute ago, by TH's CA: every
    // message TH signed in this case was received after that.
    let crl = dir.path().join("th.crl");
    let th_sign = pair.pki.paths("TH").sign_cert;
    std::fs::write(&crl, pair.pki.crl("TH", &[&th_sign])).unwrap();
    let with_crl = trust(&pair.pki)
        .with_crls(std::slice::from_ref(&crl))
        .unwrap();
    let bundle = export(&pair.kh, &case).await;
    assert!(
        evidence::verify(&bundle.to_json(), &trust(&pair.pki))
            .unwrap()
            .verified()
    );
    assert_eq!(
        broken(&bundle, &with_crl),
        ("messages[0].signature".into(), "signer_revoked")
    );
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle.to_json()).unwrap();
    let (code, text) = homeward(&[
        OsStr::new("evidence"),
        OsStr::new("verify"),
        file.as_os_str(),
        OsStr::new("--trust"),
        pair.pki.path().as_os_str(),
        OsStr::new("--crl"),
        crl.as_os_str(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("messages[0].signature") && text.contains("signer_revoked"),
        "{text}"
    );
    pair.stop().await;

    // Signatures made ten days before the same kind of revocation stand.
    let pki = Pki::new();
    let (th_then, kh_then) = (pki.expired_signer("TH"), pki.expired_signer("KH"));
    let revoked = dir.path().join("th-then.pem");
    std::fs::write(&revoked, pem(&th_then.chain()[0])).unwrap();
    std::fs::write(&crl, pki.crl("TH", &[&revoked])).unwrap();
    let now = homeward::clock::unix_ms(time::OffsetDateTime::now_utc());
    let old = signed_long_ago(
        &th_then,
        &kh_then,
        now - 10 * DAY_MS,
        &pki.signer(&pki.paths("TH")),
    );
    let with_crl = trust(&pki).with_crls(std::slice::from_ref(&crl)).unwrap();
    let report = evidence::verify(&old.to_json(), &with_crl).expect("revoked only later");
    assert!(report.verified(), "{report}");
}
