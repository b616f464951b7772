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
