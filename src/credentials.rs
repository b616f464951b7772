//! What a node presents and whom it trusts — its own TLS and signing
//! certificates and keys, each peer country's CA and CRL — loaded together
//! from the files the settings name, and replaced together on reload
//! (`SIGHUP`, `homeward reload`, or a file that changed): a half-loaded
//! set never serves. The TLS server configurations built from them live
//! here too, so a new connection always sees one consistent set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::config::Settings;
use crate::signing::{Signer, Verifier};
use crate::tls::{self, Identity, TlsError};

/// One consistent set of certificates, keys, trust anchors and CRLs.
#[derive(Debug)]
pub struct Credentials {
    /// This node's TLS identity: server on the peer port, client to peers.
    pub identity: Identity,
    /// Signs what this node sends and the receipts it issues, if configured.
    pub signer: Option<Signer>,
    /// Each peer country's CA certificates.
    pub peer_cas: BTreeMap<String, Vec<CertificateDer<'static>>>,
    /// Each peer country's CRLs (empty when its CA publishes none).
    pub peer_crls: BTreeMap<String, Vec<CertificateRevocationListDer<'static>>>,
    /// Verifies peers' signatures against these CAs and CRLs; a new set
    /// starts with nothing remembered.
    pub verifier: Verifier,
    pub peer_tls: Arc<rustls::ServerConfig>,
    pub api_tls: Arc<rustls::ServerConfig>,
    /// When each certificate stops being valid, by what it is.
    pub expiry: Vec<Expiry>,
    /// What the files looked like when loaded (see [`Fingerprint`]).
    pub fingerprint: Fingerprint,
}

/// A certificate's end of validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// `tls`, `api_tls`, `signing`, or `ca:<CC>` for a peer's CA, or
    /// `client_ca` for the local API's client CA.
    pub which: String,
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

impl Credentials {
    /// Reads every file the settings name and builds the TLS configurations;
    /// any file that does not load refuses the whole set, naming it.
    pub fn load(settings: &Settings) -> Result<Self, TlsError> {
        let fingerprint = Fingerprint::of(&watched_files(settings));
        let identity = Identity::load(&settings.tls.cert, &settings.tls.key)?;
        let country = &settings.node.country;
        if identity.node().as_deref() != Some(country.as_str()) {
            return Err(TlsError::Config(format!(
                "tls.cert `{}` names node {:?}, expected urn:homeward:node:{country}",
                settings.tls.cert.display(),
                identity.node(),
            )));
        }
        let api_identity = Identity::load(&settings.tls.api_cert, &settings.tls.api_key)?;
        let signer = match (&settings.tls.sign_cert, &settings.tls.sign_key) {
            (Some(cert), Some(key)) => {
                let signer = Signer::load(cert, key)?;
                if signer.node() != Some(country.as_str()) {
                    return Err(TlsError::Config(format!(
                        "tls.sign_cert `{}` names node {:?}, expected urn:homeward:node:{country}",
                        cert.display(),
                        signer.node(),
                    )));
                }
                Some((signer, tls::load_certs(cert)?))
            }
            _ => None,
        };
        let mut peer_cas = BTreeMap::new();
        let mut peer_crls = BTreeMap::new();
        for peer in &settings.peers {
            peer_cas.insert(peer.country.clone(), tls::load_certs(&peer.ca)?);
            let crls = match &peer.crl {
                Some(path) => tls::load_crls(path)?,
                None => Vec::new(),
            };
            peer_crls.insert(peer.country.clone(), crls);
        }
        let peer_tls = tls::peer_server_config(&identity, &peer_cas, &peer_crls)?;
        let client_cas = match &settings.local_api.client_ca {
            Some(path) => tls::load_certs(path)?,
            None => Vec::new(),
        };
        let api_tls =
            tls::local_api_server_config(&api_identity, &client_cas, settings.tls.api_tls12)?;

        let mut expiry = Vec::new();
        let mut note = |which: String, cert: Option<&CertificateDer<'_>>| {
            if let Some(e) = cert.and_then(|c| expiry_of(which, c)) {
                expiry.push(e);
            }
        };
        note("tls".into(), identity.chain.first());
        note("api_tls".into(), api_identity.chain.first());
        if let Some((_, chain)) = &signer {
            note("signing".into(), chain.first());
        }
        for (cc, cas) in &peer_cas {
            for ca in cas {
                note(format!("ca:{cc}"), Some(ca));
            }
        }
        for ca in &client_cas {
            note("client_ca".into(), Some(ca));
        }
        Ok(Self {
            identity,
            signer: signer.map(|(s, _)| s),
            peer_cas,
            peer_crls,
            verifier: Verifier::default(),
            peer_tls,
            api_tls,
            expiry,
            fingerprint,
        })
    }

    /// The CA certificates a peer country's signatures must chain to.
    pub fn cas_of(&self, country: &str) -> &[CertificateDer<'static>] {
        self.peer_cas.get(country).map_or(&[], Vec::as_slice)
    }

    /// The CRLs that peer country's CA published.
    pub fn crls_of(&self, country: &str) -> &[CertificateRevocationListDer<'static>] {
        self.peer_crls.get(country).map_or(&[], Vec::as_slice)
    }
}

fn expiry_of(which: String, cert: &CertificateDer<'_>) -> Option<Expiry> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(Expiry {
        which,
        subject: parsed.subject().to_string(),
        not_after: parsed.validity().not_after.timestamp(),
    })
}

/// Every file a reload rereads: certificates, keys, CAs, CRLs, and the
/// agreements directory's files.
pub fn watched_files(settings: &Settings) -> Vec<PathBuf> {
    let tls = &settings.tls;
    let mut files = vec![
        tls.cert.clone(),
        tls.key.clone(),
        tls.api_cert.clone(),
        tls.api_key.clone(),
    ];
    files.extend(tls.sign_cert.iter().cloned());
    files.extend(tls.sign_key.iter().cloned());
    files.extend(settings.local_api.client_ca.iter().cloned());
    for peer in &settings.peers {
        files.push(peer.ca.clone());
        files.extend(peer.crl.iter().cloned());
    }
    if let Ok(dir) = std::fs::read_dir(&settings.agreements.dir) {
        let mut agreements: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        agreements.sort();
        files.extend(agreements);
    }
    files
}

/// The size and modification time of each watched file: cheap to take
/// every few seconds, and different whenever a file is replaced (an
/// operator's `cp`, a `mv` into place, a CA's new CRL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(PathBuf, Option<(u64, SystemTime)>)>);

impl Fingerprint {
    pub fn of(files: &[PathBuf]) -> Self {
        Self(
            files
                .iter()
                .map(|f| (f.clone(), stat(f)))
                .collect::<Vec<_>>(),
        )
    }

    /// The files that differ from `other` (added, removed or changed).
    pub fn changed_since(&self, other: &Self) -> Vec<PathBuf> {
        let mut changed: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|entry| !other.0.contains(entry))
            .map(|(p, _)| p.clone())
            .collect();
        changed.extend(
            other
                .0
                .iter()
                .filter(|(p, _)| !self.0.iter().any(|(q, _)| q == p))
                .map(|(p, _)| p.clone()),
        );
        changed
    }
}

fn stat(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}
