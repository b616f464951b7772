//! TLS identity: loading certificates, turning a peer certificate into a
//! typed node identity (its SAN URI `urn:homeward:node:<CC>`), and building
//! the rustls configurations once at start.
//!
//! Trust is per country: the peer port accepts a client certificate only if
//! it chains to the CA configured for the country its URI claims, so a
//! certificate from Thailand's CA can never speak for Vietnam.

pub mod pki;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

pub const NODE_URI_PREFIX: &str = "urn:homeward:node:";
/// RFC 9336 id-kp-documentSigning: the purpose of a node's signing
/// certificate (see `crate::signing`), which no TLS certificate has.
pub const DOCUMENT_SIGNING_ARCS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 36];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} `{path}`: {message}")]
    Read {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = load_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
            what: "private key",
            path: key.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self { chain, key })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self { chain, key })
    }

    /// The node country this identity's certificate names, if any.
    pub fn node(&self) -> Option<String> {
        self.chain.first().and_then(node_of)
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what: "certificate",
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Read {
            what: "certificate",
            path: path.display().to_string(),
            message: "no PEM certificate in file".into(),
        });
    }
    Ok(certs)
}

/// The CRLs in a file: PEM (any number of `X509 CRL` blocks) or one DER.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let read = |message: String| TlsError::Read {
        what: "CRL",
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| read(e.to_string()))?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| read(e.to_string()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(read("no PEM CRL in file".into()));
    }
    // Parsed here so that a bad file is refused when loaded, not at the
    // first handshake it would have judged.
    for crl in &crls {
        webpki::OwnedCertRevocationList::from_der(crl.as_ref())
            .map_err(|e| read(format!("not a CRL: {e}")))?;
    }
    Ok(crls)
}

pub fn roots_from(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c.clone())
            .map_err(|e| TlsError::Config(format!("bad CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The country of a certificate's `urn:homeward:node:<CC>` SAN URI.
pub fn node_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            let cc = uri.strip_prefix(NODE_URI_PREFIX)?;
            (cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase())).then(|| cc.to_string())
        }
        _ => None,
    })
}

/// Subject of a certificate, for logs.
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}

/// Verifies a client certificate against the CA of the country its node URI
/// claims.
#[derive(Debug)]
struct PerCountryClientVerifier {
    by_country: BTreeMap<String, Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
    any: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for PerCountryClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let country = node_of(end_entity).ok_or_else(|| {
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )
        })?;
        let verifier = self
            .by_country
            .get(&country)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

/// Server configuration of the peer port: TLS 1.3 only, a client
/// certificate required and checked against its country's CA.
pub fn peer_server_config(
    identity: &Identity,
    peer_cas: &BTreeMap<String, Vec<CertificateDer<'static>>>,
    peer_crls: &BTreeMap<String, Vec<CertificateRevocationListDer<'static>>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut by_country = BTreeMap::new();
    let mut hints = Vec::new();
    for (country, cas) in peer_cas {
        let roots = Arc::new(roots_from(cas)?);
        hints.extend(roots.subjects());
        let crls = peer_crls.get(country).cloned().unwrap_or_default();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .with_crls(crls)
            // A CA's list speaks only for what that CA issued; a CA that
            // publishes none leaves its certificates unrevoked.
            .allow_unknown_revocation_status()
            .build()
            .map_err(|e| TlsError::Config(format!("client verifier for {country}: {e}")))?;
        by_country.insert(country.clone(), verifier);
    }
    let any = match by_country.values().next() {
        Some(v) => v.clone(),
        // With no peers configured nobody may connect; keep a verifier that
        // knows no roots so every handshake fails cleanly.
        None => {
            return Err(TlsError::Config(
                "no peers configured: the peer port would accept nobody".into(),
            ));
        }
    };
    let verifier = Arc::new(PerCountryClientVerifier {
        by_country,
        hints,
        any,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TlsError::Config(format!("node certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Server configuration of the local API: TLS 1.3, no client certificate
/// needed. With `client_cas`, a client certificate from one of them is
/// accepted (and mapped to a role by its subject) but not required: bearer
/// tokens remain the other way in.
pub fn api_server_config(
    identity: &Identity,
    client_cas: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    local_api_server_config(identity, client_cas, false)
}

/// As [`api_server_config`]; with `tls12`, TLS 1.2 is offered too
/// (`tls.api_tls12`, for legacy case systems).
pub fn local_api_server_config(
    identity: &Identity,
    client_cas: &[CertificateDer<'static>],
    tls12: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots_from(client_cas)?),
            provider,
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("local API client CA: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TlsError::Config(format!("API certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks the usual WebPKI rules against the peer's CA, then that the
/// server's certificate names the node we meant to reach.
#[derive(Debug)]
struct PeerServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: String,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match node_of(end_entity) {
            Some(node) if node == self.expected => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Client configuration towards one peer: our node certificate as client
/// identity, the peer's CA as the only trust anchor, TLS 1.3.
pub fn peer_client_config(
    identity: Option<&Identity>,
    peer_ca: &[CertificateDer<'static>],
    peer_crls: &[CertificateRevocationListDer<'static>],
    expected_node: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let roots = Arc::new(roots_from(peer_ca)?);
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(peer_crls.to_vec())
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(PeerServerVerifier {
        inner,
        expected: expected_node.to_string(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| TlsError::Config(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Client configuration trusting the system's CA bundle (for webhooks).
pub fn system_client_config() -> Result<rustls::ClientConfig, TlsError> {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ];
    let path = BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TlsError::Config("no system CA bundle found; set alerts.webhook_ca".into())
        })?;
    let certs = load_certs(path)?;
    let mut roots = RootCertStore::empty();
    // A system bundle may hold certificates rustls cannot use; skip those.
    roots.add_parsable_certificates(certs);
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Client configuration for talking to a local API that uses `ca`.
pub fn api_client_config(ca: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots_from(ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Who is on the other end of a TLS connection, learnt once after the
/// handshake and attached to every request of the connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: std::net::SocketAddr,
    /// Country from the client certificate's node URI (peer port only).
    pub node: Option<String>,
    /// Subject of the verified client certificate, if one was presented.
    pub subject: Option<String>,
}

impl ConnInfo {
    /// From the verified chain the client presented (leaf first), if any.
    pub fn new(remote: std::net::SocketAddr, chain: Option<&[CertificateDer<'_>]>) -> Self {
        let leaf = chain.and_then(|c| c.first());
        Self {
            remote,
            node: leaf.and_then(node_of),
            subject: leaf.and_then(subject_of),
        }
    }
}
