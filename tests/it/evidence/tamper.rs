//! Tampering, each kind named by its part: one changed byte in any part;
//! a message dropped or two swapped, with the manifest signed again or
//! not; a signature by another country's key.

use homeward::evidence::Bundle;
use homeward::evidence::bundle::{self as format, Manifest};
use homeward::signing::{Purpose, Signer};

use super::*;
use crate::support::*;

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
