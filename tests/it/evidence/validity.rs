//! Time: certificates and CRLs judged at each receipt's signed
//! `received_at`, so a bundle outlives its certificates and a revocation
//! counts only for what was signed after it.

use homeward::evidence::bundle::{self as format, Manifest};
use homeward::evidence::{self, Bundle};
use homeward::signing::{Purpose, Signer};
use serde_json::Value;

use super::*;
use crate::support::*;

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
