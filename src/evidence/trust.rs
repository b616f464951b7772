//! What a verifier trusts: the countries' CA certificates from a directory,
//! each assigned to its country, and any CRLs it was given.
//!
//! A CA's country is its subject's countryName (`C=`) when it has one;
//! otherwise the file's name says it: `<cc>.pem` (or `.crt`) directly in the
//! directory, or `<cc>/ca.pem` (the layout of `certs-dev/`). Where both say
//! something they must agree. Nothing else in the directory is read, so
//! `--trust certs-dev` takes the four CAs and none of the node certificates
//! beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

/// Why the trust material cannot be used (the verifier exits 2).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the trust directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error(
        "no CA certificate in {} (expected <cc>.pem files or <cc>/ca.pem directories)",
        path.display()
    )]
    Empty { path: PathBuf },
}

/// One CRL, as given and as webpki reads it (for its entries' dates).
#[derive(Debug)]
pub(super) struct Crl {
    pub der: CertificateRevocationListDer<'static>,
    pub parsed: webpki::CertRevocationList<'static>,
}

/// The CA certificates by country, and the CRLs to apply.
#[derive(Debug, Default)]
pub struct Trust {
    cas: BTreeMap<String, Vec<CertificateDer<'static>>>,
    pub(super) crls: Vec<Crl>,
}

impl Trust {
    /// Every CA certificate of `dir` (see the module's rules).
    pub fn load_dir(dir: &Path) -> Result<Self, TrustError> {
        let entries = std::fs::read_dir(dir).map_err(|source| TrustError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<(PathBuf, Option<String>)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                let ca = path.join("ca.pem");
                if ca.is_file() {
                    let named = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(country_name);
                    files.push((ca, named));
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pem" | "crt")
            ) {
                let named = path
                    .file_stem()
                    .and_then(|n| n.to_str())
                    .and_then(country_name);
                files.push((path, named));
            }
        }
        files.sort();
        let mut trust = Self::default();
        for (path, named) in files {
            trust.add_file(&path, named)?;
        }
        if trust.cas.is_empty() {
            return Err(TrustError::Empty {
                path: dir.to_path_buf(),
            });
        }
        Ok(trust)
    }

    fn add_file(&mut self, path: &Path, named: Option<String>) -> Result<(), TrustError> {
        let bad = |message: String| TrustError::File {
            path: path.to_path_buf(),
            message,
        };
        let certs = crate::tls::load_certs(path).map_err(|e| bad(e.to_string()))?;
        for cert in certs {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
                .map_err(|e| bad(format!("a certificate does not parse: {e}")))?;
            if !parsed.is_ca() {
                return Err(bad(format!("{} is not a CA certificate", parsed.subject())));
            }
            let stated = parsed
                .subject()
                .iter_country()
                .next()
                .and_then(|c| c.as_str().ok())
                .map(str::to_ascii_uppercase);
            let country = match (stated, &named) {
                (Some(c), Some(n)) if c != *n => {
                    return Err(bad(format!(
                        "the certificate says country {c}, its file name {n}"
                    )));
                }
                (Some(c), _) => c,
                (None, Some(n)) => n.clone(),
                (None, None) => {
                    return Err(bad(format!(
                        "cannot tell which country CA {} is for: it has no countryName (C=); \
                         name the file <cc>.pem or put it in <cc>/ca.pem",
                        parsed.subject()
                    )));
                }
            };
            if country_name(&country).is_none() {
                return Err(bad(format!("`{country}` is not a two-letter country code")));
            }
            self.cas.entry(country).or_default().push(cert);
        }
        Ok(())
    }

    /// Adds the CRLs in `files` (PEM or DER), applied to every signature.
    pub fn with_crls(mut self, files: &[PathBuf]) -> Result<Self, TrustError> {
        for path in files {
            let bad = |message: String| TrustError::File {
                path: path.clone(),
                message,
            };
            let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let der = if bytes.starts_with(b"-----BEGIN") {
                CertificateRevocationListDer::from_pem_slice(&bytes)
                    .map_err(|e| bad(format!("not a PEM CRL: {e}")))?
            } else {
                CertificateRevocationListDer::from(bytes)
            };
            let parsed = webpki::OwnedCertRevocationList::from_der(der.as_ref())
                .map_err(|e| bad(format!("not a CRL: {e:?}")))?
                .into();
            self.crls.push(Crl { der, parsed });
        }
        Ok(self)
    }

    /// The countries with a CA here.
    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.cas.keys().map(String::as_str)
    }

    /// `country`'s CA certificates.
    pub fn cas_of(&self, country: &str) -> Option<&[CertificateDer<'static>]> {
        self.cas.get(country).map(Vec::as_slice)
    }

    /// The CRLs that apply to a signature made at `at` by the certificate
    /// with this serial: all but those that revoke it only after `at`. A
    /// revocation is judged at the time of the signature, as validity is:
    /// a key revoked today does not undo what it signed last year. It
    /// counts from its invalidity date when the CA gives one (the key was
    /// suspect from then), else from its revocation date.
    pub(super) fn crls_at(
        &self,
        serial: &[u8],
        at: UnixTime,
    ) -> Vec<CertificateRevocationListDer<'static>> {
        self.crls
            .iter()
            .filter(|crl| match crl.parsed.find_serial(serial) {
                Ok(Some(entry)) => {
                    let from = entry
                        .invalidity_date
                        .map_or(entry.revocation_date, |d| d.min(entry.revocation_date));
                    from <= at
                }
                _ => true,
            })
            .map(|crl| crl.der.clone())
            .collect()
    }
}

/// `name` as a country code if it is two ASCII letters.
fn country_name(name: &str) -> Option<String> {
    (name.len() == 2 && name.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| name.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{generate_country, write_country};

    #[test]
    fn each_ca_is_assigned_its_country_by_name_and_nothing_else_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // The dev layout: <cc>/ca.pem beside node certificates.
        for cc in ["KH", "TH"] {
            write_country(dir.path(), &generate_country(cc, "test", 30).unwrap()).unwrap();
        }
        // A flat file named by its country.
        let vn = generate_country("VN", "test", 30).unwrap();
        std::fs::write(dir.path().join("vn.pem"), &vn.ca_cert).unwrap();
        std::fs::write(dir.path().join("README.txt"), "not a certificate").unwrap();
        let trust = Trust::load_dir(dir.path()).unwrap();
        assert_eq!(trust.countries().collect::<Vec<_>>(), ["KH", "TH", "VN"]);
        assert_eq!(trust.cas_of("TH").unwrap().len(), 1);
        assert!(trust.cas_of("MY").is_none());
    }

    #[test]
    fn a_ca_of_no_known_country_or_a_node_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let th = generate_country("TH", "test", 30).unwrap();
        std::fs::write(dir.path().join("national-ca.pem"), &th.ca_cert).unwrap();
        let e = Trust::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cannot tell which country"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("th.pem"), &th.sign_cert).unwrap();
        let e = Trust::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a CA certificate"), "{e}");

        let empty = tempfile::tempdir().unwrap();
        let e = Trust::load_dir(empty.path()).unwrap_err();
        assert!(matches!(e, TrustError::Empty { .. }), "{e}");
        let missing = empty.path().join("nowhere");
        assert!(matches!(
            Trust::load_dir(&missing).unwrap_err(),
            TrustError::Dir { .. }
        ));
    }
}
