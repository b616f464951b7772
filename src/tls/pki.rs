//! Development and test PKI: one CA per country; per node a peer
//! certificate (`urn:homeward:node:<CC>`, `localhost`, `127.0.0.1`, usable as
//! TLS server and client), a local-API server certificate, and a
//! document-signing certificate (Ed25519, the node's URI, RFC 9336 EKU,
//! no TLS use) for signed envelopes and receipts. Never for
//! production: the keys are written unencrypted next to the certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::NODE_URI_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// PEM material of one country.
#[derive(Debug, Clone)]
pub struct CountryPki {
    pub country: String,
    pub ca_cert: String,
    pub ca_key: String,
    pub peer_cert: String,
    pub peer_key: String,
    pub api_cert: String,
    pub api_key: String,
    pub sign_cert: String,
    pub sign_key: String,
}

/// Where [`write_country`] puts each file, relative to the output directory.
#[derive(Debug, Clone)]
pub struct CountryPaths {
    pub ca_cert: PathBuf,
    pub peer_cert: PathBuf,
    pub peer_key: PathBuf,
    pub api_cert: PathBuf,
    pub api_key: PathBuf,
    pub sign_cert: PathBuf,
    pub sign_key: PathBuf,
}

impl CountryPaths {
    pub fn new(dir: &Path, country: &str) -> Self {
        let d = dir.join(country.to_ascii_lowercase());
        Self {
            ca_cert: d.join("ca.pem"),
            peer_cert: d.join("peer.pem"),
            peer_key: d.join("peer.key"),
            api_cert: d.join("api.pem"),
            api_key: d.join("api.key"),
            sign_cert: d.join("sign.pem"),
            sign_key: d.join("sign.key"),
        }
    }
}

fn dn(common_name: &str, country: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(
        DnType::OrganizationName,
        format!("Homeward development PKI ({country})"),
    );
    dn
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
}

/// Makes a fresh CA and node certificates for `country`. `ca_label` lets a
/// test make a second, untrusted CA that claims the same country.
pub fn generate_country(country: &str, ca_label: &str, days: i64) -> Result<CountryPki, PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn(&format!("Homeward {ca_label} CA {country}"), country);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca_params, days);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let peer_key = KeyPair::generate()?;
    let mut peer = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    peer.subject_alt_names.push(SanType::URI(
        format!("{NODE_URI_PREFIX}{country}").try_into()?,
    ));
    peer.distinguished_name = dn(&format!("homeward-node-{country}"), country);
    peer.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    peer.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut peer, days);
    let peer_cert = peer.signed_by(&peer_key, &issuer)?;

    let api_key = KeyPair::generate()?;
    let mut api = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    api.distinguished_name = dn(&format!("homeward-api-{country}"), country);
    api.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    api.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut api, days);
    let api_cert = api.signed_by(&api_key, &issuer)?;

    let (sign_cert, sign_key) = signing_certificate(country, &issuer, days)?;

    Ok(CountryPki {
        sign_cert,
        sign_key,
        country: country.to_string(),
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        peer_cert: peer_cert.pem(),
        peer_key: peer_key.serialize_pem(),
        api_cert: api_cert.pem(),
        api_key: api_key.serialize_pem(),
    })
}

/// A document-signing certificate for `country`'s node, issued by
/// `issuer`: Ed25519, the node's URI, key usage digital signature and
/// non-repudiation, the RFC 9336 document-signing EKU, no TLS purpose.
pub fn signing_certificate(
    country: &str,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    days: i64,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names.push(SanType::URI(
        format!("{NODE_URI_PREFIX}{country}").try_into()?,
    ));
    params.distinguished_name = dn(&format!("homeward-signing-{country}"), country);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(
        super::DOCUMENT_SIGNING_ARCS.to_vec(),
    )];
    validity(&mut params, days);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes one country's material under `dir/<cc>/`. The CA key is not
/// written: regenerate the whole set instead of issuing more.
pub fn write_country(dir: &Path, pki: &CountryPki) -> Result<CountryPaths, PkiError> {
    let paths = CountryPaths::new(dir, &pki.country);
    let write = |path: &Path, text: &str| -> Result<(), PkiError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PkiError::Write {
                path: parent.display().to_string(),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| PkiError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    write(&paths.ca_cert, &pki.ca_cert)?;
    write(&paths.peer_cert, &pki.peer_cert)?;
    write(&paths.peer_key, &pki.peer_key)?;
    write(&paths.api_cert, &pki.api_cert)?;
    write(&paths.api_key, &pki.api_key)?;
    write(&paths.sign_cert, &pki.sign_cert)?;
    write(&paths.sign_key, &pki.sign_key)?;
    Ok(paths)
}

/// `homeward dev-certs`: a PKI for every listed country under `dir`.
pub fn write_dev_pki(
    dir: &Path,
    countries: &[&str],
    days: i64,
) -> Result<Vec<CountryPaths>, PkiError> {
    countries
        .iter()
        .map(|cc| write_country(dir, &generate_country(cc, "development", days)?))
        .collect()
}
