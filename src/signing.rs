//! Signatures a third party can check: each node signs the exact bytes of
//! what it sends (envelopes) and of what it issues (receipts) with a key of
//! its own, separate from its TLS key, certified by its country's CA for
//! document signing (RFC 9336 EKU) and naming the node
//! (`urn:homeward:node:<CC>`).
//!
//! The form is a compact JWS with a detached payload (RFC 7515 appendix F):
//! `BASE64URL(header)..BASE64URL(signature)`, the signing input being
//! `BASE64URL(header) . BASE64URL(bytes)`, so what is signed is the bytes
//! that travel, never a re-serialization. The algorithm is Ed25519
//! (`EdDSA`, RFC 8037): deterministic, so a resend carries the same
//! signature. The header carries the signing certificate chain (`x5c`).
//! Built on ring and webpki (already what rustls uses) rather than a JOSE
//! crate: only this one algorithm and form are needed, and the chain must
//! be judged with the same webpki as TLS.
//!
//! (Over 600 lines because a third is the tests of every refusal code on
//! real certificates; the signing code itself is under 450.)

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tls::{self, TlsError};

/// RFC 9336 id-kp-documentSigning (1.3.6.1.5.5.7.3.36), DER value bytes
/// (the arcs are `tls::DOCUMENT_SIGNING_ARCS`).
const DOCUMENT_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x24];

/// What a signature covers, named in its header (`typ`) so that a
/// receipt's signature cannot pass for an envelope's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Envelope,
    Receipt,
    /// The manifest of a case's evidence bundle (`crate::evidence`), signed
    /// by the node that exported it.
    Evidence,
    /// A tally of a corridor's messages (`domain::reconcile`), signed by the
    /// node that counted it, for the peer it answers.
    Reconcile,
}

impl Purpose {
    fn typ(self) -> &'static str {
        match self {
            Self::Envelope => "homeward-envelope+jws",
            Self::Receipt => "homeward-receipt+jws",
            Self::Evidence => "homeward-evidence+jws",
            Self::Reconcile => "homeward-reconcile+jws",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    /// The signing certificate first, then any intermediates; standard
    /// base64 DER (RFC 7515 §4.1.6).
    x5c: Vec<String>,
}

/// Why a signature is not accepted; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not a detached compact JWS of this form.
    #[error("the signature is not a detached compact JWS (EdDSA, x5c): {0}")]
    Malformed(String),
    /// The bytes are not what was signed, or the key did not sign them.
    #[error("the signature does not match the signed bytes")]
    BadSignature,
    /// The signing certificate does not chain to the trusted CA, is not a
    /// document-signing certificate, or was not valid at the time.
    #[error("the signer is not trusted: {0}")]
    UnknownSigner(String),
    /// A certificate this node was told to distrust.
    #[error("the signing certificate is revoked")]
    Revoked,
    /// The certificate names another node than the one that sent it.
    #[error("signed by node {signer:?}, but sent by {expected}")]
    SignerMismatch {
        signer: Option<String>,
        expected: String,
    },
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::BadSignature => "bad_signature",
            Self::UnknownSigner(_) => "unknown_signer",
            Self::Revoked => "signer_revoked",
            Self::SignerMismatch { .. } => "signer_mismatch",
        }
    }
}

/// A node's signing key and certificate chain.
pub struct Signer {
    key: Ed25519KeyPair,
    /// The encoded header for each purpose: the same for every signature.
    envelope_header: String,
    receipt_header: String,
    evidence_header: String,
    reconcile_header: String,
    chain: Vec<CertificateDer<'static>>,
    node: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("node", &self.node).finish()
    }
}

impl Signer {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = tls::load_certs(cert)?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
            what: "signing key",
            path: key.display().to_string(),
            message: e.to_string(),
        })?;
        Self::new(chain, &key_der).map_err(|message| TlsError::Read {
            what: "signing key",
            path: key.display().to_string(),
            message,
        })
    }

    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, String> {
        let PrivateKeyDer::Pkcs8(pkcs8) = key else {
            return Err("an Ed25519 key in PKCS#8 is needed".into());
        };
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
            .map_err(|e| format!("not an Ed25519 key: {e}"))?;
        let leaf = chain.first().ok_or("the certificate file is empty")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("the signing certificate does not parse: {e}"))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key().as_ref() {
            return Err("the key is not the signing certificate's".into());
        }
        let x5c: Vec<String> = chain.iter().map(|c| STANDARD.encode(c.as_ref())).collect();
        let header = |purpose: Purpose| {
            let header = Header {
                alg: "EdDSA".into(),
                typ: purpose.typ().into(),
                x5c: x5c.clone(),
            };
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a header serializes"))
        };
        Ok(Self {
            envelope_header: header(Purpose::Envelope),
            receipt_header: header(Purpose::Receipt),
            evidence_header: header(Purpose::Evidence),
            reconcile_header: header(Purpose::Reconcile),
            key,
            node: tls::node_of(leaf),
            chain,
        })
    }

    /// The node the signing certificate names.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The signing certificate, then any intermediates (what `x5c` carries).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The detached JWS over `bytes`.
    pub fn sign(&self, purpose: Purpose, bytes: &[u8]) -> String {
        let header = match purpose {
            Purpose::Envelope => &self.envelope_header,
            Purpose::Receipt => &self.receipt_header,
            Purpose::Evidence => &self.evidence_header,
            Purpose::Reconcile => &self.reconcile_header,
        };
        let input = signing_input(header, bytes);
        let signature = self.key.sign(input.as_bytes());
        format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn signing_input(header_b64: &str, bytes: &[u8]) -> String {
    let mut input = String::with_capacity(header_b64.len() + 1 + bytes.len() * 4 / 3 + 4);
    input.push_str(header_b64);
    input.push('.');
    URL_SAFE_NO_PAD.encode_string(bytes, &mut input);
    input
}

/// A verified signature: who made it, with which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub node: String,
    /// SHA-256 of the signing certificate (DER), hex.
    pub cert_sha256: String,
}

/// Checks `jws` over `bytes`: the form, the signature, the chain to one of
/// `trusted` (the sender country's CA) as a document-signing certificate
/// valid at every one of `at` and not revoked by any of `crls`, and that it
/// names `expected` node.
pub fn verify(
    jws: &str,
    purpose: Purpose,
    bytes: &[u8],
    trusted: &[CertificateDer<'static>],
    crls: &[CertificateRevocationListDer<'static>],
    at: &[UnixTime],
    expected: &str,
) -> Result<Signed, SignatureError> {
    let parsed = Parsed::of(jws, purpose)?;
    parsed.check_signature(bytes)?;
    let node = parsed.check_chain(trusted, crls, at)?;
    parsed.signed_by(node, expected, parsed.leaf_sha256())
}

/// The certificate chain a signature's header carries (`x5c`), signing
/// certificate first, not judged: what an evidence bundle lists as the
/// chains its signatures used.
pub fn chain_of(
    jws: &str,
    purpose: Purpose,
) -> Result<Vec<CertificateDer<'static>>, SignatureError> {
    Ok(Parsed::of(jws, purpose)?.chain)
}

/// Verifies signatures as [`verify`] does, remembering for a while each
/// signing certificate whose chain held: a peer signs every message with
/// the same certificate, and judging its chain (an ECDSA verification by
/// the CA's key) costs three times the Ed25519 check itself. A new CA or
/// CRL means a new `Verifier` (the node's trust material is reloaded
/// whole), so nothing judged under the old material is remembered.
#[derive(Debug, Default)]
pub struct Verifier {
    /// (certificate SHA-256, expected node) -> (node it names, trusted
    /// until: its `not_after` or the cache's horizon, Unix seconds).
    chains: std::sync::Mutex<Chains>,
}

/// (certificate SHA-256, expected node) -> (node named, trusted until).
type Chains = std::collections::HashMap<(String, String), (Option<String>, u64)>;

/// How long a judged chain is trusted without judging it again.
const CHAIN_HORIZON_SECS: u64 = 600;

impl Verifier {
    /// [`verify`] at the current time, the chain judged at most once per
    /// certificate per [`CHAIN_HORIZON_SECS`].
    pub fn verify_now(
        &self,
        jws: &str,
        purpose: Purpose,
        bytes: &[u8],
        trusted: &[CertificateDer<'static>],
        crls: &[CertificateRevocationListDer<'static>],
        expected: &str,
    ) -> Result<Signed, SignatureError> {
        let parsed = Parsed::of(jws, purpose)?;
        parsed.check_signature(bytes)?;
        let now = UnixTime::now().as_secs();
        let cert_sha256 = parsed.leaf_sha256();
        let key = (cert_sha256.clone(), expected.to_string());
        let cached = self
            .lock()
            .get(&key)
            .filter(|(_, until)| now < *until)
            .map(|(node, _)| node.clone());
        let node = match cached {
            Some(node) => node,
            None => {
                let node = parsed.check_chain(trusted, crls, &[UnixTime::now()])?;
                let until = parsed.not_after().min(now + CHAIN_HORIZON_SECS);
                let mut chains = self.lock();
                if chains.len() > 1024 {
                    chains.clear();
                }
                chains.insert(key, (node.clone(), until));
                node
            }
        };
        parsed.signed_by(node, expected, cert_sha256)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chains> {
        self.chains.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A detached JWS taken apart.
struct Parsed<'a> {
    header_b64: &'a str,
    signature: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
}

impl<'a> Parsed<'a> {
    fn of(jws: &'a str, purpose: Purpose) -> Result<Self, SignatureError> {
        let malformed = |m: &str| SignatureError::Malformed(m.to_string());
        let (header_b64, rest) = jws.split_once('.').ok_or_else(|| malformed("no `.`"))?;
        let signature_b64 = rest
            .strip_prefix('.')
            .ok_or_else(|| malformed("the payload is not detached"))?;
        let header: Header = URL_SAFE_NO_PAD
            .decode(header_b64)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| malformed("the header is not base64url JSON"))?;
        if header.alg != "EdDSA" {
            return Err(malformed("alg must be EdDSA"));
        }
        if header.typ != purpose.typ() {
            return Err(malformed(&format!("typ must be {}", purpose.typ())));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| malformed("the signature is not base64url"))?;
        let chain: Vec<CertificateDer<'static>> = header
            .x5c
            .iter()
            .map(|c| STANDARD.decode(c).map(CertificateDer::from))
            .collect::<Result<_, _>>()
            .map_err(|_| malformed("x5c is not base64 DER"))?;
        if chain.is_empty() {
            return Err(malformed("x5c is empty"));
        }
        Ok(Self {
            header_b64,
            signature,
            chain,
        })
    }

    fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    fn leaf_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.leaf().as_ref()))
    }

    fn end_entity(&self) -> Result<webpki::EndEntityCert<'_>, SignatureError> {
        webpki::EndEntityCert::try_from(self.leaf()).map_err(|e| {
            SignatureError::UnknownSigner(format!("the certificate does not parse: {e}"))
        })
    }

    fn check_signature(&self, bytes: &[u8]) -> Result<(), SignatureError> {
        self.end_entity()?
            .verify_signature(
                webpki::ring::ED25519,
                signing_input(self.header_b64, bytes).as_bytes(),
                &self.signature,
            )
            .map_err(|_| SignatureError::BadSignature)
    }

    /// The chain to `trusted` for document signing at each of `at`, not
    /// revoked by `crls`; the node the certificate names.
    fn check_chain(
        &self,
        trusted: &[CertificateDer<'static>],
        crls: &[CertificateRevocationListDer<'static>],
        at: &[UnixTime],
    ) -> Result<Option<String>, SignatureError> {
        let cert = self.end_entity()?;
        let anchors: Vec<_> = trusted
            .iter()
            .filter_map(|ca| webpki::anchor_from_trusted_cert(ca).ok())
            .collect();
        let crls: Vec<webpki::CertRevocationList<'_>> = crls
            .iter()
            .map(|crl| webpki::BorrowedCertRevocationList::from_der(crl.as_ref()).map(Into::into))
            .collect::<Result<_, _>>()
            .map_err(|e| SignatureError::UnknownSigner(format!("a CRL does not parse: {e}")))?;
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
        // A certificate no configured CRL speaks for is not revoked: CRLs
        // are optional per CA, and one CA's list says nothing of another's.
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                b.with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .build()
            });
        let algorithms = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        for time in at {
            cert.verify_for_usage(
                algorithms,
                &anchors,
                &self.chain[1..],
                *time,
                webpki::KeyUsage::required(DOCUMENT_SIGNING),
                revocation,
                None,
            )
            .map_err(|e| match e {
                webpki::Error::CertRevoked => SignatureError::Revoked,
                e => SignatureError::UnknownSigner(e.to_string()),
            })?;
        }
        Ok(tls::node_of(self.leaf()))
    }

    /// The leaf's `not_after`, Unix seconds (0 if it cannot be read).
    fn not_after(&self) -> u64 {
        x509_parser::parse_x509_certificate(self.leaf().as_ref())
            .ok()
            .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok())
            .unwrap_or(0)
    }

    fn signed_by(
        &self,
        signer: Option<String>,
        expected: &str,
        cert_sha256: String,
    ) -> Result<Signed, SignatureError> {
        if signer.as_deref() != Some(expected) {
            return Err(SignatureError::SignerMismatch {
                signer,
                expected: expected.to_string(),
            });
        }
        Ok(Signed {
            node: expected.to_string(),
            cert_sha256,
        })
    }
}

/// SHA-256 of a signature's text, hex: what a receipt quotes of it.
pub fn digest(jws: &str) -> String {
    hex::encode(Sha256::digest(jws.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::generate_country;

    struct Country {
        ca: Vec<CertificateDer<'static>>,
        signer: Signer,
        tls: crate::tls::Identity,
    }

    fn country(cc: &str) -> Country {
        let pki = generate_country(cc, "test", 30).unwrap();
        let ca = CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let chain = CertificateDer::pem_slice_iter(pki.sign_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.sign_key.as_bytes()).unwrap();
        Country {
            ca,
            signer: Signer::new(chain, &key).unwrap(),
            tls: crate::tls::Identity::from_pem(&pki.peer_cert, &pki.peer_key).unwrap(),
        }
    }

    /// A signer whose certificate is a TLS client/server one, and its CA.
    fn tls_purpose_signer(cc: &str) -> (Signer, Vec<CertificateDer<'static>>) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
        let pki = generate_country(cc, "test", 30).unwrap();
        let ca_key = KeyPair::from_pem(&pki.ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&pki.ca_cert, ca_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            format!("urn:homeward:node:{cc}").try_into().unwrap(),
        ));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let key_der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        let ca = CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (Signer::new(vec![cert.der().clone()], &key_der).unwrap(), ca)
    }

    fn now() -> Vec<UnixTime> {
        vec![UnixTime::now()]
    }

    const BYTES: &[u8] = br#"{"message_id":"m","payload":{"k":"v"}}"#;

    #[test]
    fn a_signature_verifies_and_is_deterministic() {
        let th = country("TH");
        assert_eq!(th.signer.node(), Some("TH"));
        let jws = th.signer.sign(Purpose::Envelope, BYTES);
        assert!(jws.contains(".."), "detached: {jws}");
        assert_eq!(jws, th.signer.sign(Purpose::Envelope, BYTES));
        let signed = verify(&jws, Purpose::Envelope, BYTES, &th.ca, &[], &now(), "TH").unwrap();
        assert_eq!(signed.node, "TH");
        assert_eq!(signed.cert_sha256.len(), 64);
    }

    #[test]
    fn a_remembered_chain_never_lets_a_forgery_through() {
        let th = country("TH");
        let kh = country("KH");
        let v = Verifier::default();
        let jws = th.signer.sign(Purpose::Envelope, BYTES);
        v.verify_now(&jws, Purpose::Envelope, BYTES, &th.ca, &[], "TH")
            .unwrap();
        v.verify_now(&jws, Purpose::Envelope, BYTES, &th.ca, &[], "TH")
            .unwrap();
        // The same certificate over other bytes, or for another node.
        let code = |r: Result<Signed, SignatureError>| r.unwrap_err().code();
        assert_eq!(
            code(v.verify_now(&jws, Purpose::Envelope, b"other", &th.ca, &[], "TH")),
            "bad_signature"
        );
        assert_eq!(
            code(v.verify_now(&jws, Purpose::Envelope, BYTES, &th.ca, &[], "VN")),
            "signer_mismatch"
        );
        // Another certificate is judged on its own.
        let by_kh = kh.signer.sign(Purpose::Envelope, BYTES);
        assert_eq!(
            code(v.verify_now(&by_kh, Purpose::Envelope, BYTES, &th.ca, &[], "TH")),
            "unknown_signer"
        );
        assert_eq!(
            code(v.verify_now(&by_kh, Purpose::Envelope, BYTES, &th.ca, &[], "TH")),
            "unknown_signer"
        );
    }

    #[test]
    fn every_forgery_is_refused_with_its_code() {
        let th = country("TH");
        let kh = country("KH");
        let jws = th.signer.sign(Purpose::Envelope, BYTES);
        let code = |r: Result<Signed, SignatureError>| r.unwrap_err().code();
        // One byte changed after signing.
        let mut changed = BYTES.to_vec();
        changed[30] ^= 1;
        assert_eq!(
            code(verify(
                &jws,
                Purpose::Envelope,
                &changed,
                &th.ca,
                &[],
                &now(),
                "TH"
            )),
            "bad_signature"
        );
        // A receipt's signature offered for an envelope.
        let receipt = th.signer.sign(Purpose::Receipt, BYTES);
        assert_eq!(
            code(verify(
                &receipt,
                Purpose::Envelope,
                BYTES,
                &th.ca,
                &[],
                &now(),
                "TH"
            )),
            "bad_signature"
        );
        // Signed by another country, judged against TH's CA.
        let by_kh = kh.signer.sign(Purpose::Envelope, BYTES);
        assert_eq!(
            code(verify(
                &by_kh,
                Purpose::Envelope,
                BYTES,
                &th.ca,
                &[],
                &now(),
                "TH"
            )),
            "unknown_signer"
        );
        // KH's own signature, sent by TH.
        assert_eq!(
            code(verify(
                &by_kh,
                Purpose::Envelope,
                BYTES,
                &kh.ca,
                &[],
                &now(),
                "TH"
            )),
            "signer_mismatch"
        );
        // Signed with TH's TLS certificate's key: no document-signing purpose.
        let tls_signer = Signer::new(th.tls.chain.clone(), &th.tls.key);
        assert!(tls_signer.is_err(), "a TLS key (ECDSA) cannot sign");
        // An Ed25519 key certified for TLS (node URI, but no
        // document-signing purpose) signs.
        let tls_ed = tls_purpose_signer("TH");
        let by_tls = tls_ed.0.sign(Purpose::Envelope, BYTES);
        assert_eq!(
            code(verify(
                &by_tls,
                Purpose::Envelope,
                BYTES,
                &tls_ed.1,
                &[],
                &now(),
                "TH"
            )),
            "unknown_signer"
        );
        // Out of the certificate's validity.
        let later = vec![UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap() + 400 * 86_400,
        ))];
        assert_eq!(
            code(verify(
                &jws,
                Purpose::Envelope,
                BYTES,
                &th.ca,
                &[],
                &later,
                "TH"
            )),
            "unknown_signer"
        );
        // Not a JWS at all.
        assert_eq!(
            code(verify(
                "a.b.c",
                Purpose::Envelope,
                BYTES,
                &th.ca,
                &[],
                &now(),
                "TH"
            )),
            "bad_signature"
        );
        assert_eq!(
            code(verify(
                "",
                Purpose::Envelope,
                BYTES,
                &th.ca,
                &[],
                &now(),
                "TH"
            )),
            "bad_signature"
        );
    }
}
