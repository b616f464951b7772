//! The verifier on bundles made here, without a store: a referral from TH
//! and KH's acknowledgement, exported by TH.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use super::bundle::{self, Direction, Manifest, ManifestMessage, MessageParts};
use super::*;
use crate::clock::rfc3339_ms;
use crate::protocol::{AnswerDue, Receipt};
use crate::signing::{Purpose, Signer};
use crate::tls::pki::{CountryPki, generate_country};

const CASE: &str = "TH-KH-2026-000001";
const HOUR: i64 = 3_600_000;

struct Country {
    pki: CountryPki,
    signer: Signer,
}

fn country(cc: &str) -> Country {
    let pki = generate_country(cc, "test", 30).unwrap();
    let chain = CertificateDer::pem_slice_iter(pki.sign_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.sign_key.as_bytes()).unwrap();
    let signer = Signer::new(chain, &key).unwrap();
    Country { pki, signer }
}

/// A trust directory of these countries' CAs (`<cc>.pem`).
fn trust(dir: &Path, countries: &[&Country]) -> Trust {
    for c in countries {
        let name = format!("{}.pem", c.pki.country.to_ascii_lowercase());
        std::fs::write(dir.join(name), &c.pki.ca_cert).unwrap();
    }
    Trust::load_dir(dir).unwrap()
}

fn now_ms() -> i64 {
    crate::clock::unix_ms(time::OffsetDateTime::now_utc())
}

/// One message: its envelope, signature, receipt and receipt signature.
fn message(
    envelope: serde_json::Value,
    sender: &Country,
    receiver: &Country,
    received_at: i64,
    answer_due: Option<(&str, i64)>,
    signed: bool,
) -> MessageParts {
    let text = envelope.to_string();
    let signature = signed.then(|| sender.signer.sign(Purpose::Envelope, text.as_bytes()));
    let receipt = Receipt {
        message_id: envelope["message_id"].as_str().unwrap().to_string(),
        receiver: receiver.pki.country.clone(),
        received_at: rfc3339_ms(received_at),
        envelope_sha256: bundle::sha256_hex(text.as_bytes()),
        answer_due: answer_due.map(|(t, due)| AnswerDue {
            message_type: t.to_string(),
            due_at: rfc3339_ms(due),
        }),
        signature_sha256: signature.as_deref().map(crate::signing::digest),
    };
    let receipt = serde_json::to_string(&receipt).unwrap();
    MessageParts {
        envelope: Some(bundle::encode(text.as_bytes())),
        receipt_signature: signed
            .then(|| receiver.signer.sign(Purpose::Receipt, receipt.as_bytes())),
        signature,
        receipt: Some(bundle::encode(receipt.as_bytes())),
    }
}

fn envelope(id: &str, kind: &str, from: &str, to: &str, reply: Option<&str>) -> serde_json::Value {
    json!({
        "message_id": id, "case_ref": CASE, "type": kind, "schema_version": 1,
        "from": from, "to": to, "in_reply_to": reply, "created_at": "2026-11-22T09:30:00Z",
        "payload": {"accepted": true},
    })
}

const REFERRAL: &str = "01936f3e-5b7a-7c2d-9a61-000000000001";
const ACK: &str = "01936f3e-5b7a-7c2d-9a61-000000000002";

/// TH's bundle: its referral, received by KH at `t0`, and KH's answer an
/// hour later; exported now.
fn sample(th: &Country, kh: &Country, t0: i64, signed: bool) -> Bundle {
    let messages = vec![
        message(
            envelope(REFERRAL, "referral.notify", "TH", "KH", None),
            th,
            kh,
            t0,
            Some(("referral.acknowledge", t0 + 72 * HOUR)),
            signed,
        ),
        message(
            envelope(ACK, "referral.acknowledge", "KH", "TH", Some(REFERRAL)),
            kh,
            th,
            t0 + HOUR,
            None,
            signed,
        ),
    ];
    let record = bundle::AuditPart {
        seq: 7,
        at: t0,
        actor: "TH-case-system".into(),
        role: "caseworker".into(),
        action: "message.submit".into(),
        case_ref: Some(CASE.into()),
        message_id: Some(REFERRAL.into()),
        result: "ok".into(),
        officer: Some("officer-7".into()),
        prev_hash: "ab".repeat(32),
        hash: String::new(),
    };
    let record = bundle::AuditPart {
        hash: crate::store::audit::chain_hash(&record.prev_hash, record.seq, &record.entry()),
        ..record
    };
    let certificates = [&th.signer, &kh.signer]
        .iter()
        .flat_map(|s| s.chain())
        .map(|c| bundle::encode(c.as_ref()))
        .collect();
    let mut b = Bundle::unsealed(
        messages,
        certificates,
        vec![bundle::encode(&serde_json::to_vec(&record).unwrap())],
    );
    b.seal(manifest(now_ms()), &th.signer);
    b
}

fn manifest(at: i64) -> Manifest {
    let entry = |id: &str, seq, direction| ManifestMessage {
        message_id: id.into(),
        seq,
        direction,
        envelope: None,
        signature: None,
        receipt: None,
        receipt_signature: None,
    };
    Manifest {
        format: bundle::FORMAT.into(),
        version: bundle::VERSION,
        case_ref: CASE.into(),
        exported_by: "TH".into(),
        exported_at: rfc3339_ms(at),
        messages: vec![
            entry(REFERRAL, 1, Direction::Sent),
            entry(ACK, 2, Direction::Received),
        ],
        certificates: Vec::new(),
        audit: Vec::new(),
        undelivered: Vec::new(),
    }
}

fn part_of(e: VerifyError) -> (String, &'static str) {
    match e {
        VerifyError::Broken { part, code, .. } => (part, code),
        e => panic!("not a broken part: {e}"),
    }
}

#[test]
fn a_bundle_verifies_and_reports_who_signed_and_when_it_was_answered() {
    let (th, kh) = (country("TH"), country("KH"));
    let dir = tempfile::tempdir().unwrap();
    let trust = trust(dir.path(), &[&th, &kh]);
    let report = verify(&sample(&th, &kh, now_ms(), true).to_json(), &trust).unwrap();
    assert!(report.verified(), "{report}");
    assert_eq!(report.messages.len(), 2);
    assert_eq!(report.messages[0].signed_by.as_deref(), Some("TH"));
    assert_eq!(report.messages[0].receipt_signed_by.as_deref(), Some("KH"));
    let answered = report.messages[0]
        .answer
        .as_ref()
        .unwrap()
        .answered
        .as_ref()
        .unwrap();
    assert_eq!((answered.by, answered.in_time), (1, true));
    assert_eq!(report.audit_records, 1);
    let text = report.to_string();
    assert!(
        text.contains("answered by [1]") && text.contains("VERIFIED"),
        "{text}"
    );
}

#[test]
fn time_is_the_receivers_received_at_not_today() {
    // The certificates are valid from yesterday for 30 days: a receipt
    // dated two days ago was signed before they were valid; one dated in
    // ten days falls inside their validity, whatever today is.
    let (th, kh) = (country("TH"), country("KH"));
    let dir = tempfile::tempdir().unwrap();
    let trust = trust(dir.path(), &[&th, &kh]);
    let early = sample(&th, &kh, now_ms() - 48 * HOUR, true);
    let (part, code) = part_of(verify(&early.to_json(), &trust).unwrap_err());
    assert_eq!(
        (part.as_str(), code),
        ("messages[0].receipt_signature", "unknown_signer")
    );
    let later = sample(&th, &kh, now_ms() + 240 * HOUR, true);
    assert!(verify(&later.to_json(), &trust).unwrap().verified());
}

#[test]
fn unsigned_messages_are_exported_but_never_pass_as_verified() {
    let (th, kh) = (country("TH"), country("KH"));
    let dir = tempfile::tempdir().unwrap();
    let trust = trust(dir.path(), &[&th, &kh]);
    let report = verify(&sample(&th, &kh, now_ms(), false).to_json(), &trust).unwrap();
    assert!(!report.verified());
    assert_eq!(
        report.unsigned,
        [
            "messages[0].receipt_signature",
            "messages[0].signature",
            "messages[1].receipt_signature",
            "messages[1].signature"
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains("UNSIGNED") && text.contains("NOT VERIFIED"),
        "{text}"
    );
}

#[test]
fn a_country_whose_ca_is_not_given_makes_the_bundle_unusable() {
    let (th, kh) = (country("TH"), country("KH"));
    let dir = tempfile::tempdir().unwrap();
    let only_th = trust(dir.path(), &[&th]);
    let e = verify(&sample(&th, &kh, now_ms(), true).to_json(), &only_th).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Unusable(m) if m.contains("KH")),
        "{e}"
    );
}

#[test]
fn garbage_is_unusable_or_broken_and_no_input_panics() {
    let (th, kh) = (country("TH"), country("KH"));
    let dir = tempfile::tempdir().unwrap();
    let trust = trust(dir.path(), &[&th, &kh]);
    let unusable = |bytes: &[u8]| matches!(verify(bytes, &trust), Err(VerifyError::Unusable(_)));
    assert!(unusable(b"not json"));
    assert!(unusable(b"[]"));
    assert!(unusable(br#"{"format": "something-else", "version": 1}"#));
    assert!(unusable(
        br#"{"format": "homeward-evidence", "version": 2}"#
    ));
    assert!(unusable(br#"{"format": "homeward-evidence"}"#));
    assert!(unusable(
        br#"{"format": "homeward-evidence", "version": 1, "messages": 3}"#
    ));
    let (part, code) =
        part_of(verify(br#"{"format": "homeward-evidence", "version": 1}"#, &trust).unwrap_err());
    assert_eq!((part.as_str(), code), ("manifest", "missing"));
    // Any byte changed or the file cut anywhere: an answer, never a panic.
    let good = sample(&th, &kh, now_ms(), true).to_json();
    for at in (0..good.len()).step_by(131) {
        let mut bad = good.clone();
        bad[at] ^= 0x15;
        let _ = verify(&bad, &trust);
        assert!(verify(&good[..at], &trust).is_err(), "cut at {at}");
    }
}
