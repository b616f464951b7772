//! A throwaway PKI for the tests: a CA and certificates for each of the four
//! countries, plus a rogue CA that also claims to be Thailand's.

use std::path::Path;

use homeward::tls::Identity;
use homeward::tls::pki::{self, CountryPaths};
use tempfile::TempDir;

pub const COUNTRIES: &[&str] = &["KH", "TH", "VN", "MY"];

/// A fresh PKI for the four countries, plus a rogue CA that also claims
/// to be Thailand's (in `rogue/th`), in a temporary directory.
pub struct Pki {
    pub dir: TempDir,
    /// Each country's CA certificate and key (PEM), to issue more.
    cas: Vec<(String, String, String)>,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cas = Vec::new();
        for cc in COUNTRIES {
            let country = pki::generate_country(cc, "development", 30).expect("test PKI");
            pki::write_country(dir.path(), &country).expect("test PKI written");
            cas.push((cc.to_string(), country.ca_cert, country.ca_key));
        }
        let rogue = pki::generate_country("TH", "rogue", 30).expect("rogue PKI");
        pki::write_country(&dir.path().join("rogue"), &rogue).expect("rogue PKI written");
        Self { dir, cas }
    }

    /// A signer for `cc` whose certificate, from `cc`'s own CA, expired
    /// yesterday.
    pub fn expired_signer(&self, cc: &str) -> homeward::signing::Signer {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
        let (_, ca_cert, ca_key) = self.cas.iter().find(|(c, ..)| c == cc).expect("a country");
        let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).unwrap()).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names.push(SanType::URI(
            format!("urn:homeward:node:{cc}").try_into().unwrap(),
        ));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
            homeward::tls::DOCUMENT_SIGNING_ARCS.to_vec(),
        )];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        homeward::signing::Signer::new(vec![cert.der().clone()], &key_der).unwrap()
    }

    /// A CRL (PEM) from `cc`'s CA that revokes the certificates in the
    /// PEM files `revoked` (none: a list that revokes nothing).
    pub fn crl(&self, cc: &str, revoked: &[&Path]) -> String {
        use rcgen::{
            CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
            RevokedCertParams, SerialNumber,
        };
        let (_, ca_cert, ca_key) = self.cas.iter().find(|(c, ..)| c == cc).expect("a country");
        let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).unwrap()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|path| {
                let der = homeward::tls::load_certs(path).expect("a certificate")[0].clone();
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
                RevokedCertParams {
                    serial_number: SerialNumber::from_slice(cert.raw_serial()),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&issuer).unwrap().pem().unwrap()
    }

    /// Issues `cc` a new node (TLS) certificate and key from its CA and
    /// writes them over the old files; the new certificate's DER.
    pub fn reissue_peer(&self, cc: &str) -> Vec<u8> {
        use rcgen::{
            CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
        };
        let (_, ca_cert, ca_key) = self.cas.iter().find(|(c, ..)| c == cc).expect("a country");
        let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            format!("urn:homeward:node:{cc}").try_into().unwrap(),
        ));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let paths = self.paths(cc);
        // Key first: a reload between the two writes sees a key that does
        // not match the old certificate and is refused, never half-applied.
        std::fs::write(&paths.peer_key, key.serialize_pem()).unwrap();
        std::fs::write(&paths.peer_cert, cert.pem()).unwrap();
        cert.der().to_vec()
    }

    /// `cc`'s signer, as the gateway loads it.
    pub fn signer(&self, paths: &CountryPaths) -> homeward::signing::Signer {
        homeward::signing::Signer::load(&paths.sign_cert, &paths.sign_key).expect("signer")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn paths(&self, cc: &str) -> CountryPaths {
        CountryPaths::new(self.path(), cc)
    }

    pub fn rogue_th(&self) -> CountryPaths {
        CountryPaths::new(&self.path().join("rogue"), "TH")
    }

    pub fn identity(&self, paths: &CountryPaths) -> Identity {
        Identity::load(&paths.peer_cert, &paths.peer_key).expect("identity")
    }
}
