//! A finished case exported by either side, by the library, the route and
//! the CLI; a purged case refused; an unsigned one never passing.

use homeward::evidence::{self, Bundle};
use serde_json::Value;

use super::*;
use crate::support::*;

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

#[tokio::test]
async fn a_purged_case_is_refused_and_an_unsigned_one_never_passes_as_verified() {
    // TH and KH exchange a referral and its answer with signing off.
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_s = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    let mut th_s = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    for s in [&mut kh_s, &mut th_s] {
        s.tls.sign_cert = None;
        s.tls.sign_key = None;
    }
    let (kh, kh_worker) = start_manual(kh_s, kh_l).await;
    let (th, th_worker) = start_manual(th_s, th_l).await;
    let (th_api, kh_api) = (api(&pki, "TH", th.api_addr), api(&pki, "KH", kh.api_addr));
    let case = case_ref("TH", "KH", 6);
    let referral = send(&th_api, &th_worker, referral("TH", "KH", &case, 6)).await;
    let ack = example_payload("referral.acknowledge", |p| p["accepted"] == true);
    let ack = envelope(
        "referral.acknowledge",
        "KH",
        "TH",
        &case,
        Some(&referral),
        ack,
    );
    send(&kh_api, &kh_worker, ack).await;

    // Exported once TH has a signing key: every message is in the bundle,
    // and verification names each unsigned part instead of passing it.
    let signer = pki.signer(&pki.paths("TH"));
    let now = homeward::clock::unix_ms(time::OffsetDateTime::now_utc());
    let bundle = evidence::export(&th.node.store, &signer, "TH", &case, now)
        .await
        .unwrap();
    assert_eq!(bundle.messages.len(), 2);
    let report = evidence::verify(&bundle.to_json(), &trust(&pki)).unwrap();
    assert!(!report.verified(), "{report}");
    assert_eq!(report.unsigned.len(), 4, "{report}");
    assert!(report.to_string().contains("NOT VERIFIED"), "{report}");
    // Without a signing key the route cannot seal a bundle.
    let admin = kh_api.with_token(ADMIN_TOKEN);
    let path = format!("/v1/cases/{case}/evidence");
    let r = admin.get(&path).await.unwrap();
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (409, &Value::from("no_signing_key"))
    );

    // Purged: the stored envelopes are skeletons, not the bytes that were
    // exchanged; the export is refused, naming the case.
    let purged = homeward::store::retention::PurgeCandidate {
        case_ref: case.clone(),
        state: "closed".into(),
        last_activity: now,
        messages: 2,
    };
    th.node.store.purge_case(&purged, now).await.unwrap();
    let e = evidence::export(&th.node.store, &signer, "TH", &case, now)
        .await
        .unwrap_err();
    assert!(matches!(e, evidence::ExportError::Purged { .. }), "{e}");
    assert!(e.to_string().contains(&case), "{e}");
    th.stop().await;
    kh.stop().await;
}
