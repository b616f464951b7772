//! Verification, offline, with nothing but the countries' CA certificates
//! (and CRLs if given): the manifest's signature by the exporting node,
//! every part against its digest in the manifest, every envelope's
//! signature by its sender and every receipt's by its receiver, what each
//! receipt says of its envelope, the case's order, and the audit records'
//! hashes. The first broken part is named.
//!
//! Time: a receipt's `received_at`, signed by the receiver, is when the
//! sender's signature and the receipt's were made; each certificate's
//! validity (and revocation) is judged then, not today, so a bundle stays
//! verifiable after its certificates expire. The manifest's signature is
//! judged at its `exported_at`.

use rustls::pki_types::UnixTime;
use serde_json::Value;

use super::bundle::{self, AuditPart, Bundle, Direction, FORMAT, Manifest, VERSION, part};
pub use super::error::VerifyError;
use super::error::broken;
use super::message::{Checked, check_receipt, decode_envelope, required};
use super::order;
use super::report::{MessageReport, Report};
use super::trust::Trust;
use crate::signing::{self, Purpose, Signed};

/// Verifies the bundle in `bytes` against `trust`.
pub fn verify(bytes: &[u8], trust: &Trust) -> Result<Report, VerifyError> {
    let bundle = parse(bytes)?;
    let (manifest, exporter) = check_manifest(&bundle, trust)?;
    check_digests(&bundle, &manifest)?;
    let listed: Vec<String> = manifest.certificates.clone();
    let mut unsigned = Vec::new();
    let mut checked = Vec::with_capacity(bundle.messages.len());
    let mut reports = Vec::with_capacity(bundle.messages.len());
    for (i, parts) in bundle.messages.iter().enumerate() {
        let entry = &manifest.messages[i];
        let envelope_bytes = required(&parts.envelope, i, "envelope")?;
        let envelope = decode_envelope(&envelope_bytes, i)?;
        if envelope.message.message_id != entry.message_id {
            return Err(broken(
                part("messages", i, Some("envelope")),
                "mismatch",
                format!(
                    "is message {}, the manifest says {}",
                    envelope.message.message_id, entry.message_id
                ),
            ));
        }
        if envelope.case_ref != manifest.case_ref {
            return Err(broken(
                part("messages", i, Some("envelope")),
                "wrong_case",
                format!(
                    "is of case {}, not {}",
                    envelope.case_ref, manifest.case_ref
                ),
            ));
        }
        let exporter_side = match entry.direction {
            Direction::Sent => &envelope.message.from,
            Direction::Received => &envelope.to,
        };
        if *exporter_side != manifest.exported_by {
            return Err(broken(
                part("messages", i, None),
                "wrong_direction",
                format!(
                    "listed as {:?} by {}, but it went from {} to {}",
                    entry.direction, manifest.exported_by, envelope.message.from, envelope.to
                ),
            ));
        }
        let receipt_bytes = required(&parts.receipt, i, "receipt")?;
        let (receipt, received_at_ms) =
            check_receipt(&receipt_bytes, &envelope_bytes, &envelope, i)?;
        let receipt_signed_by = match &parts.receipt_signature {
            Some(jws) => {
                let name = part("messages", i, Some("receipt_signature"));
                let by = judge(
                    trust,
                    &name,
                    jws,
                    Purpose::Receipt,
                    &receipt_bytes,
                    &envelope.to,
                    received_at_ms,
                )?;
                listed_chain(jws, Purpose::Receipt, &listed, &name)?;
                Some(by)
            }
            None => {
                unsigned.push(part("messages", i, Some("receipt_signature")));
                None
            }
        };
        let signed_by = match &parts.signature {
            Some(jws) => {
                let name = part("messages", i, Some("signature"));
                let by = judge(
                    trust,
                    &name,
                    jws,
                    Purpose::Envelope,
                    &envelope_bytes,
                    &envelope.message.from,
                    received_at_ms,
                )?;
                listed_chain(jws, Purpose::Envelope, &listed, &name)?;
                if receipt.signature_sha256.as_deref() != Some(signing::digest(jws).as_str()) {
                    return Err(broken(
                        part("messages", i, Some("receipt")),
                        "receipt_mismatch",
                        "signature_sha256 does not match the sender's signature",
                    ));
                }
                Some(by)
            }
            None if receipt.signature_sha256.is_some() => {
                return Err(broken(
                    part("messages", i, Some("signature")),
                    "missing",
                    "missing, though the receipt quotes one (signature_sha256)",
                ));
            }
            None => {
                unsigned.push(part("messages", i, Some("signature")));
                None
            }
        };
        reports.push(MessageReport::new(
            &envelope,
            &receipt,
            signed_by.map(|s| s.node),
            receipt_signed_by.map(|s| s.node),
        ));
        checked.push(Checked {
            envelope,
            receipt,
            received_at_ms,
        });
    }
    order::check(&manifest, &checked)?;
    let audit = check_audit(&bundle, &manifest)?;
    Ok(Report::new(
        &manifest,
        exporter.node,
        reports,
        &checked,
        audit,
        unsigned,
    ))
}

/// The bundle in `bytes`, or why it is not one.
fn parse(bytes: &[u8]) -> Result<Bundle, VerifyError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| VerifyError::Unusable(format!("not an evidence bundle: not JSON ({e})")))?;
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(VerifyError::Unusable(format!(
            "not an evidence bundle: its `format` is not `{FORMAT}`"
        )));
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        other => {
            return Err(VerifyError::Unusable(format!(
                "bundle version {}: this homeward reads version {VERSION}",
                other.map_or_else(|| "missing".to_string(), |v| v.to_string())
            )));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| VerifyError::Unusable(format!("not an evidence bundle: {e}")))
}

/// The manifest, once its signature by the node it names holds.
fn check_manifest(bundle: &Bundle, trust: &Trust) -> Result<(Manifest, Signed), VerifyError> {
    let text = bundle
        .manifest
        .as_deref()
        .ok_or_else(|| broken("manifest", "missing", "missing"))?;
    let bytes =
        bundle::decode(text).ok_or_else(|| broken("manifest", "malformed", "not base64"))?;
    let jws = bundle
        .manifest_signature
        .as_deref()
        .ok_or_else(|| broken("manifest_signature", "missing", "missing"))?;
    // Read before its signature is judged, for whom and when to judge it
    // by; nothing else of it is used until the signature holds.
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| broken("manifest", "malformed", format!("not a manifest: {e}")))?;
    let at = crate::clock::parse_rfc3339_ms(&manifest.exported_at)
        .ok_or_else(|| broken("manifest", "malformed", "exported_at is not RFC 3339"))?;
    let signed = judge(
        trust,
        "manifest_signature",
        jws,
        Purpose::Evidence,
        &bytes,
        &manifest.exported_by,
        at,
    )
    .map_err(|e| match e {
        // The manifest or its signature changed: which, no one can tell.
        VerifyError::Broken {
            code: "bad_signature",
            reason,
            ..
        } => broken(
            "manifest",
            "bad_signature",
            format!("does not match manifest_signature: {reason}"),
        ),
        e => e,
    })?;
    listed_chain(
        jws,
        Purpose::Evidence,
        &manifest.certificates,
        "manifest_signature",
    )?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(broken(
            "manifest",
            "malformed",
            "its format or version is not the bundle's",
        ));
    }
    Ok((manifest, signed))
}

/// Every part against its digest in the manifest, and no part the
/// manifest does not list.
fn check_digests(bundle: &Bundle, manifest: &Manifest) -> Result<(), VerifyError> {
    for i in 0..bundle.messages.len().max(manifest.messages.len()) {
        let (Some(parts), Some(entry)) = (bundle.messages.get(i), manifest.messages.get(i)) else {
            return Err(if i < manifest.messages.len() {
                broken(
                    part("messages", i, None),
                    "missing",
                    "listed in the manifest, missing from the bundle",
                )
            } else {
                broken(part("messages", i, None), "unlisted", "not in the manifest")
            });
        };
        for (field, have, want, text) in [
            ("envelope", &parts.envelope, &entry.envelope, false),
            ("signature", &parts.signature, &entry.signature, true),
            ("receipt", &parts.receipt, &entry.receipt, false),
            (
                "receipt_signature",
                &parts.receipt_signature,
                &entry.receipt_signature,
                true,
            ),
        ] {
            digest_matches(
                &part("messages", i, Some(field)),
                have.as_deref(),
                want.as_deref(),
                text,
            )?;
        }
    }
    for (kind, have, want) in [
        ("certificates", &bundle.certificates, &manifest.certificates),
        ("audit", &bundle.audit, &manifest.audit),
    ] {
        for i in 0..have.len().max(want.len()) {
            digest_matches(
                &part(kind, i, None),
                have.get(i).map(String::as_str),
                want.get(i).map(String::as_str),
                false,
            )?;
        }
    }
    Ok(())
}

/// One part against its listed digest: over its text (a signature) or its
/// base64-decoded bytes.
fn digest_matches(
    name: &str,
    have: Option<&str>,
    want: Option<&str>,
    text: bool,
) -> Result<(), VerifyError> {
    match (have, want) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(broken(
            name,
            "missing",
            "listed in the manifest, missing from the bundle",
        )),
        (Some(_), None) => Err(broken(name, "unlisted", "not in the manifest")),
        (Some(have), Some(want)) => {
            let digest = if text {
                bundle::sha256_hex(have.as_bytes())
            } else {
                bundle::digest_b64(have).ok_or_else(|| broken(name, "malformed", "not base64"))?
            };
            if digest == want {
                Ok(())
            } else {
                Err(broken(
                    name,
                    "digest_mismatch",
                    "does not match its digest in the manifest",
                ))
            }
        }
    }
}

/// Every certificate of `jws`'s chain is among the bundle's (by digest).
fn listed_chain(
    jws: &str,
    purpose: Purpose,
    listed: &[String],
    name: &str,
) -> Result<(), VerifyError> {
    let Ok(chain) = signing::chain_of(jws, purpose) else {
        // Not a JWS of this kind: judging it says so.
        return Ok(());
    };
    if chain
        .iter()
        .all(|c| listed.contains(&bundle::sha256_hex(c.as_ref())))
    {
        Ok(())
    } else {
        Err(broken(
            name,
            "unlisted_certificate",
            "its certificate chain is not among the bundle's certificates",
        ))
    }
}

/// `jws` over `bytes` by node `country`, chained to that country's CA,
/// judged at `at_ms`.
fn judge(
    trust: &Trust,
    name: &str,
    jws: &str,
    purpose: Purpose,
    bytes: &[u8],
    country: &str,
    at_ms: i64,
) -> Result<Signed, VerifyError> {
    let trusted = trust.cas_of(country).ok_or_else(|| {
        VerifyError::Unusable(format!(
            "no CA certificate for {country} in the trust directory, needed for {name}"
        ))
    })?;
    let at = u64::try_from(at_ms)
        .map(|ms| UnixTime::since_unix_epoch(std::time::Duration::from_millis(ms)))
        .map_err(|_| broken(name, "malformed", "signed before 1970"))?;
    // The CRLs as they stood then: a revocation after `at` does not count.
    let serial = signing::chain_of(jws, purpose)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .and_then(|leaf| {
            x509_parser::parse_x509_certificate(leaf.as_ref())
                .ok()
                .map(|(_, c)| c.raw_serial().to_vec())
        });
    let crls = serial.map_or_else(Vec::new, |s| trust.crls_at(&s, at));
    signing::verify(jws, purpose, bytes, trusted, &crls, &[at], country)
        .map_err(|e| broken(name, e.code(), e.to_string()))
}

/// The audit records: each one's hash, its case, and the chain between
/// neighbours that were neighbours in the node's whole log.
fn check_audit(bundle: &Bundle, manifest: &Manifest) -> Result<usize, VerifyError> {
    let mut previous: Option<AuditPart> = None;
    for (i, text) in bundle.audit.iter().enumerate() {
        let name = part("audit", i, None);
        let record: AuditPart = bundle::decode(text)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| broken(&name, "malformed", "not an audit record"))?;
        if record.case_ref.as_deref() != Some(manifest.case_ref.as_str()) {
            return Err(broken(&name, "wrong_case", "is not of the bundle's case"));
        }
        if crate::store::audit::chain_hash(&record.prev_hash, record.seq, &record.entry())
            != record.hash
        {
            return Err(broken(
                &name,
                "audit_hash",
                "its content does not match its hash",
            ));
        }
        if let Some(p) = &previous {
            if record.seq <= p.seq {
                return Err(broken(
                    &name,
                    "out_of_order",
                    "comes before the record listed ahead of it",
                ));
            }
            if record.seq == p.seq + 1 && record.prev_hash != p.hash {
                return Err(broken(
                    &name,
                    "audit_hash",
                    "does not chain to the record before it",
                ));
            }
        }
        previous = Some(record);
    }
    Ok(bundle.audit.len())
}
