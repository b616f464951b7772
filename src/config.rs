//! Node configuration: typed, read from a TOML file, then overridden by
//! environment variables named `HOMEWARD_<SECTION>__<KEY>` (for example
//! `HOMEWARD_DATABASE__URL`). Relative paths are resolved against the current
//! working directory. Bad configuration is an error naming the key and file,
//! never a panic.
//!
//! (Over 600 lines: one typed section per table of the README's
//! configuration reference, and the validation naming each key.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::agreement::is_known_country;

/// Top-level sections; only environment variables naming one of these are
/// read, so unrelated `HOMEWARD_*` variables (test URLs, log settings) are
/// not mistaken for configuration.
const SECTIONS: &[&str] = &[
    "node",
    "peer_api",
    "local_api",
    "database",
    "tls",
    "agreements",
    "delivery",
    "peers",
    "tokens",
    "calendar",
    "timers",
    "alerts",
    "encryption",
    "client_certs",
    "reports",
    "statistics",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error in {file}: {message}")]
    Parse { file: String, message: String },
    #[error("configuration error in {file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// Everything one gateway needs to run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub node: NodeSettings,
    pub peer_api: ListenSettings,
    pub local_api: ListenSettings,
    pub database: DatabaseSettings,
    pub tls: TlsSettings,
    pub agreements: AgreementSettings,
    /// Keys that seal message bodies at rest.
    pub encryption: crate::store::seal::EncryptionSettings,
    #[serde(default)]
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub peers: Vec<PeerSettings>,
    #[serde(default)]
    pub tokens: Vec<TokenSettings>,
    /// Client certificates (by subject) allowed on the local API, with roles.
    #[serde(default)]
    pub client_certs: Vec<ClientCertSettings>,
    /// This country's working calendar: deadlines in business days that
    /// this node owes are counted in it.
    #[serde(default)]
    pub calendar: crate::domain::calendar::Calendar,
    #[serde(default)]
    pub timers: TimerSettings,
    #[serde(default)]
    pub alerts: AlertSettings,
    #[serde(default)]
    pub statistics: StatisticsSettings,
    /// The printed documents (handover record, the person's timeline).
    #[serde(default)]
    pub reports: ReportSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticsSettings {
    /// Counts below this are shown as `<k` in every table (small-cell
    /// suppression); at least 2.
    pub k: u64,
}

impl Default for StatisticsSettings {
    fn default() -> Self {
        Self {
            k: crate::domain::statistics::DEFAULT_K,
        }
    }
}

/// Where the PDF of a printed document comes from: headless Chromium.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// The Chromium binary that renders `?format=pdf`. Unset: the first
    /// of [`ReportSettings::CHROMIUM_CANDIDATES`] that exists. A missing
    /// browser does not stop the gateway: only PDFs are refused (503
    /// `pdf_unavailable`), the HTML pages still print.
    pub chromium: Option<PathBuf>,
    /// Longest one PDF may take to render; the browser is killed then.
    pub pdf_timeout_ms: u64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            chromium: None,
            pdf_timeout_ms: 30_000,
        }
    }
}

impl ReportSettings {
    /// Where Debian and Ubuntu install Chromium.
    pub const CHROMIUM_CANDIDATES: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];

    /// The browser to run, if there is one: the configured path when it
    /// exists, else the first candidate that does; `Err` names what was
    /// looked for.
    pub fn chromium(&self) -> Result<PathBuf, String> {
        match &self.chromium {
            Some(p) if p.is_file() => Ok(p.clone()),
            Some(p) => Err(p.display().to_string()),
            None => Self::CHROMIUM_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| Self::CHROMIUM_CANDIDATES.join(" or ")),
        }
    }

    pub fn pdf_timeout(&self) -> Duration {
        Duration::from_millis(self.pdf_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimerSettings {
    /// Reminders at these fractions of each deadline, ascending, each in (0, 1).
    pub reminders: Vec<f64>,
}

impl Default for TimerSettings {
    fn default() -> Self {
        Self {
            reminders: vec![0.5, 0.8],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// HTTPS endpoint that receives reminders, breaches and dead messages as JSON.
    pub webhook_url: Option<String>,
    /// CA for the webhook's certificate; the system bundle when absent.
    pub webhook_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// ISO 3166-1 alpha-2 code of this focal point, e.g. `KH`.
    pub country: String,
    /// The focal-point organisation running this gateway.
    pub organisation: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSettings {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Local API only: largest body of `POST /v1/messages/batch`, in bytes
    /// (each message in it is held to `max_body_bytes` on its own). Unset:
    /// [`DEFAULT_MAX_BATCH_BYTES`], or `max_body_bytes` if larger; read it
    /// with [`ListenSettings::max_batch_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<usize>,
    /// Sustained requests per second per caller (token holder or peer).
    #[serde(default = "default_rate")]
    pub rate_per_second: f64,
    /// Requests a caller may make at once above the sustained rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Local API only: CA whose client certificates are accepted; each
    /// certificate's subject must be listed in `[[client_certs]]`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Longest a client may take to send a request's headers (HTTP/1.1:
    /// the connection is closed) or its body (`408`), in milliseconds, so
    /// a slow or stalled client cannot hold a connection forever.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed, in
    /// milliseconds (HTTP/1.1 keep-alive and HTTP/2 alike); clients
    /// reconnect as they need.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl ListenSettings {
    /// The largest batch body the local API takes.
    pub fn max_batch_bytes(&self) -> usize {
        self.max_batch_bytes
            .unwrap_or(DEFAULT_MAX_BATCH_BYTES.max(self.max_body_bytes))
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

fn default_idle_timeout_ms() -> u64 {
    120_000
}

fn default_read_timeout_ms() -> u64 {
    30_000
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

/// 500 envelopes of 16 KiB each: eight times a typical one (about 2 KB).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The most `local_api.max_batch_bytes` may be: a batch is parsed whole in
/// memory, and a body past this is not even read to its end (413).
pub const MAX_BATCH_BYTES_CAP: usize = 256 * 1024 * 1024;

fn default_rate() -> f64 {
    200.0
}

fn default_burst() -> u32 {
    400
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite:///path/to/file.db` (created if missing), or
    /// `postgres://user@host/db` for several instances of one gateway.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// This node's certificate (PEM, SAN URI `urn:homeward:node:<CC>`), used
    /// as server certificate on the peer port and client certificate towards peers.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate and key the local API serves.
    pub api_cert: PathBuf,
    pub api_key: PathBuf,
    /// Also offer TLS 1.2 on the local API port, for a case-management
    /// system that cannot speak TLS 1.3. Off by default; the peer port is
    /// TLS 1.3 only, always.
    #[serde(default)]
    pub api_tls12: bool,
    /// This node's document-signing certificate and key (Ed25519, SAN URI
    /// `urn:homeward:node:<CC>`, EKU id-kp-documentSigning, from this
    /// country's CA). With them the node signs every envelope it sends and
    /// every receipt it issues; without them it signs nothing.
    #[serde(default)]
    pub sign_cert: Option<PathBuf>,
    #[serde(default)]
    pub sign_key: Option<PathBuf>,
    /// How often the gateway looks whether any certificate, key, CA, CRL
    /// or agreement file changed, and reloads them if so (as `SIGHUP`
    /// does); 0 turns the watch off.
    #[serde(default = "default_watch_interval_ms")]
    pub watch_interval_ms: u64,
}

fn default_watch_interval_ms() -> u64 {
    10_000
}

impl TlsSettings {
    /// `None` when the watch is off.
    pub fn watch_interval(&self) -> Option<std::time::Duration> {
        (self.watch_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(self.watch_interval_ms))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementSettings {
    /// Directory of `*.toml` agreements; those naming this node apply.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// First retry delay.
    pub initial_backoff_ms: u64,
    /// Cap on the retry delay.
    pub max_backoff_ms: u64,
    /// Messages in flight to peers at once (sent in batches of up to 64 per
    /// peer, several batches at a time).
    pub concurrency: usize,
    /// Timeout of one delivery attempt.
    pub request_timeout_ms: u64,
    /// After this long without a receipt a message is `dead`.
    pub deadline_hours: u64,
    /// With PostgreSQL, how long a claimed message is kept from the other
    /// instances of this gateway; if its claimer dies, another instance
    /// sends it when the lease runs out. Must exceed `request_timeout_ms`.
    pub lease_ms: u64,
    /// Longest wait between two probes of a peer that is down (one message
    /// sent in place of every due one). Probes start at
    /// `initial_backoff_ms` and double up to this (or `max_backoff_ms`, if
    /// lower): a probe is one request, so it can come much more often than
    /// the retries of every message, and it bounds how long a peer that is
    /// back waits for its backlog.
    pub probe_interval_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_ms: 60_000,
            concurrency: 256,
            request_timeout_ms: 15_000,
            deadline_hours: 72,
            lease_ms: 30_000,
            probe_interval_ms: 2_000,
        }
    }
}

impl DeliverySettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSettings {
    /// The peer's country code; its certificate must carry `urn:homeward:node:<country>`.
    pub country: String,
    /// Where the peer's peer API listens, e.g. `https://127.0.0.1:7102`.
    pub base_url: String,
    /// The CA that issues the peer's certificates (its only trust anchor).
    pub ca: PathBuf,
    /// The certificate revocation list that CA publishes (PEM or DER),
    /// applied to the peer's TLS and signing certificates. Reread on
    /// reload and whenever the file changes.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Who holds the token (shown in logs and audit, never the token).
    pub name: String,
    pub role: crate::domain::access::Role,
    /// Hex SHA-256 of the bearer token; the token itself is never stored.
    pub sha256: String,
    /// Role `embassy` only, and required for it: the country whose
    /// nationals the mission serves; it sees only their cases.
    #[serde(default)]
    pub serves: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertSettings {
    /// Who holds the certificate (logs and audit).
    pub name: String,
    pub role: crate::domain::access::Role,
    /// The certificate's subject as `homeward` prints it, e.g. `CN=kh-cms, O=MOSVY`.
    pub subject: String,
    /// As for tokens: the nationality an `embassy` certificate serves.
    #[serde(default)]
    pub serves: Option<String>,
}

/// An embassy serves one known country; nobody else serves any.
fn check_serves(role: crate::domain::access::Role, serves: &Option<String>) -> Result<(), String> {
    use crate::domain::access::Role;
    match (role, serves) {
        (Role::Embassy, None) => {
            Err("an embassy must say whose nationals it serves, e.g. serves = \"KH\"".into())
        }
        (Role::Embassy, Some(cc)) if !is_known_country(cc) => {
            Err(format!("`{cc}` is not a known country"))
        }
        (Role::Embassy, Some(_)) | (_, None) => Ok(()),
        (other, Some(_)) => Err(format!(
            "only an embassy serves a nationality, not a {}",
            other.as_str()
        )),
    }
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Reads `path`, applies environment overrides and checks the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Invalid {
                file,
                key: "-".into(),
                message: "configuration file not found".into(),
            });
        }
        let env = Env::prefixed("HOMEWARD_").split("__").filter(|key| {
            let first = key.as_str().split('.').next().unwrap_or_default();
            SECTIONS.contains(&first.to_ascii_lowercase().as_str())
        });
        let settings: Settings = Figment::new()
            .merge(Toml::file(path))
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse {
                file: file.clone(),
                message: e.to_string(),
            })?;
        settings.check(&file)?;
        Ok(settings)
    }

    /// Semantic checks serde cannot express.
    pub fn check(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        if !is_known_country(&self.node.country) {
            return Err(invalid(
                "node.country",
                format!("`{}` is not a known country code", self.node.country),
            ));
        }
        if crate::store::Backend::of_url(&self.database.url).is_none() {
            return Err(invalid(
                "database.url",
                "must start with `sqlite:` (embedded) or `postgres://` (shared by several instances)"
                    .into(),
            ));
        }
        for (key, path) in [
            ("tls.cert", Some(&self.tls.cert)),
            ("tls.key", Some(&self.tls.key)),
            ("tls.api_cert", Some(&self.tls.api_cert)),
            ("tls.api_key", Some(&self.tls.api_key)),
            ("tls.sign_cert", self.tls.sign_cert.as_ref()),
            ("tls.sign_key", self.tls.sign_key.as_ref()),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(invalid(key, format!("file `{}` not found", path.display())));
            }
        }
        if self.tls.sign_cert.is_some() != self.tls.sign_key.is_some() {
            let missing = if self.tls.sign_cert.is_some() {
                "tls.sign_key"
            } else {
                "tls.sign_cert"
            };
            return Err(invalid(
                missing,
                "tls.sign_cert and tls.sign_key go together".into(),
            ));
        }
        if !self.agreements.dir.is_dir() {
            return Err(invalid(
                "agreements.dir",
                format!("directory `{}` not found", self.agreements.dir.display()),
            ));
        }
        for (key, port) in [
            ("peer_api.idle_timeout_ms", &self.peer_api),
            ("local_api.idle_timeout_ms", &self.local_api),
        ] {
            if port.idle_timeout_ms < 100 {
                return Err(invalid(
                    key,
                    format!(
                        "must be at least 100 (milliseconds), not {}",
                        port.idle_timeout_ms
                    ),
                ));
            }
        }
        for (key, port) in [
            ("peer_api.read_timeout_ms", &self.peer_api),
            ("local_api.read_timeout_ms", &self.local_api),
        ] {
            if port.read_timeout_ms < 100 {
                return Err(invalid(
                    key,
                    format!(
                        "{} ms would cut off every client; at least 100",
                        port.read_timeout_ms
                    ),
                ));
            }
        }
        if self.peer_api.max_batch_bytes.is_some() {
            return Err(invalid(
                "peer_api.max_batch_bytes",
                "is a local API setting; the peer port takes a batch of up to 64 messages of max_body_bytes each".into(),
            ));
        }
        let batch = self.local_api.max_batch_bytes();
        if batch < self.local_api.max_body_bytes || batch > MAX_BATCH_BYTES_CAP {
            return Err(invalid(
                "local_api.max_batch_bytes",
                format!(
                    "must be at least local_api.max_body_bytes ({}) and at most {MAX_BATCH_BYTES_CAP}, not {batch}",
                    self.local_api.max_body_bytes
                ),
            ));
        }
        let d = &self.delivery;
        if d.initial_backoff_ms == 0 || d.max_backoff_ms < d.initial_backoff_ms {
            return Err(invalid(
                "delivery.max_backoff_ms",
                "must be at least delivery.initial_backoff_ms, which must be > 0".into(),
            ));
        }
        if d.concurrency == 0 {
            return Err(invalid("delivery.concurrency", "must be > 0".into()));
        }
        if d.probe_interval_ms == 0 {
            return Err(invalid("delivery.probe_interval_ms", "must be > 0".into()));
        }
        if d.lease_ms <= d.request_timeout_ms {
            return Err(invalid(
                "delivery.lease_ms",
                format!(
                    "must exceed delivery.request_timeout_ms ({} ms), or another instance resends a message still in flight",
                    d.request_timeout_ms
                ),
            ));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if !is_known_country(&peer.country) || peer.country == self.node.country {
                return Err(invalid(
                    &format!("peers[{i}].country"),
                    format!("`{}` is not a known peer country", peer.country),
                ));
            }
            if self.peers[..i].iter().any(|p| p.country == peer.country) {
                return Err(invalid(
                    &format!("peers[{i}].country"),
                    format!("peer `{}` is listed twice", peer.country),
                ));
            }
            if reqwest::Url::parse(&peer.base_url)
                .map(|u| u.scheme() != "https")
                .unwrap_or(true)
            {
                return Err(invalid(
                    &format!("peers[{i}].base_url"),
                    format!("`{}` is not an https URL", peer.base_url),
                ));
            }
            if let Some(crl) = &peer.crl
                && !crl.is_file()
            {
                return Err(invalid(
                    &format!("peers[{i}].crl"),
                    format!("file `{}` not found", crl.display()),
                ));
            }
            if !peer.ca.is_file() {
                return Err(invalid(
                    &format!("peers[{i}].ca"),
                    format!("file `{}` not found", peer.ca.display()),
                ));
            }
        }
        if !self.client_certs.is_empty() && self.local_api.client_ca.is_none() {
            return Err(invalid(
                "local_api.client_ca",
                "required when [[client_certs]] are listed".into(),
            ));
        }
        if let Some(ca) = &self.local_api.client_ca
            && !ca.is_file()
        {
            return Err(invalid(
                "local_api.client_ca",
                format!("file `{}` not found", ca.display()),
            ));
        }
        if let Err(e) = crate::store::seal::Sealer::from_settings(&self.encryption) {
            return Err(invalid("encryption", e.to_string()));
        }
        if let Err(e) = self.calendar.compile() {
            return Err(invalid(&format!("calendar.{}", e.key), e.message));
        }
        let r = &self.timers.reminders;
        if r.iter().any(|f| !(*f > 0.0 && *f < 1.0)) || r.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(
                "timers.reminders",
                "fractions must be ascending and strictly between 0 and 1".into(),
            ));
        }
        if self.statistics.k < 2 {
            return Err(invalid(
                "statistics.k",
                "must be at least 2: below it no count is hidden".into(),
            ));
        }
        if let Some(url) = &self.alerts.webhook_url
            && reqwest::Url::parse(url)
                .map(|u| u.scheme() != "https")
                .unwrap_or(true)
        {
            return Err(invalid(
                "alerts.webhook_url",
                format!("`{url}` is not an https URL"),
            ));
        }
        if !(1_000..=600_000).contains(&self.reports.pdf_timeout_ms) {
            return Err(invalid(
                "reports.pdf_timeout_ms",
                format!(
                    "must be between 1000 and 600000 (milliseconds), not {}",
                    self.reports.pdf_timeout_ms
                ),
            ));
        }
        if let Some(path) = &self.reports.chromium
            && (path.as_os_str().is_empty() || path.is_dir())
        {
            return Err(invalid(
                "reports.chromium",
                format!("`{}` is not a browser binary", path.display()),
            ));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            let ok =
                token.sha256.len() == 64 && token.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(invalid(
                    &format!("tokens[{i}].sha256"),
                    "must be 64 hex digits (see `homeward token-hash`)".into(),
                ));
            }
            check_serves(token.role, &token.serves)
                .map_err(|m| invalid(&format!("tokens[{i}].serves"), m))?;
        }
        for (i, cert) in self.client_certs.iter().enumerate() {
            check_serves(cert.role, &cert.serves)
                .map_err(|m| invalid(&format!("client_certs[{i}].serves"), m))?;
        }
        Ok(())
    }

    pub fn peer(&self, country: &str) -> Option<&PeerSettings> {
        self.peers.iter().find(|p| p.country == country)
    }
}
