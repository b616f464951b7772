//! A network of gateways on 127.0.0.1 for the demo, tests and benchmarks:
//! settings for each node, listeners bound first so every node knows its
//! peers' ports, and a small client for the local API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::{
    AgreementSettings, DatabaseSettings, DeliverySettings, ListenSettings, NodeSettings,
    PeerSettings, Settings, TlsSettings, TokenSettings,
};
use crate::domain::access::{Role, hash_token};
use crate::gateway::{Gateway, GatewayError, Listeners, RunningGateway};
use crate::tls::pki::CountryPaths;
use crate::tls::{self, TlsError};

/// Focal-point organisations, for settings and display.
pub fn organisation(country: &str) -> &'static str {
    match country {
        "KH" => "Ministry of Social Affairs, Veterans and Youth Rehabilitation (MOSVY)",
        "TH" => "Ministry of Social Development and Human Security (MSDHS)",
        "VN" => "Ministry of Labour, Invalids and Social Affairs (MOLISA)",
        "MY" => "Malaysian focal point (Council for Anti-Trafficking in Persons)",
        _ => "focal point",
    }
}

/// Which peers a node has in the shipped network: Cambodia has an agreement
/// with each of the others; they have agreements only with Cambodia.
pub fn default_peers(country: &str, all: &[&str]) -> Vec<String> {
    all.iter()
        .filter(|c| **c != country && (country == "KH" || **c == "KH"))
        .map(|c| c.to_string())
        .collect()
}

/// Settings for one node of a local network.
#[allow(clippy::too_many_arguments)]
pub fn node_settings(
    country: &str,
    certs_dir: &Path,
    agreements_dir: &Path,
    database_url: &str,
    listeners: (&std::net::SocketAddr, &std::net::SocketAddr),
    peers: &[(String, String)],
    tokens: &[(String, Role, String)],
    delivery: DeliverySettings,
    key_file: &Path,
) -> Settings {
    let own = CountryPaths::new(certs_dir, country);
    Settings {
        node: NodeSettings {
            country: country.to_string(),
            organisation: organisation(country).to_string(),
        },
        peer_api: ListenSettings {
            listen: *listeners.0,
            max_body_bytes: 1024 * 1024,
            max_batch_bytes: None,
            rate_per_second: 2000.0,
            burst: 4000,
            client_ca: None,
            read_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
        },
        local_api: ListenSettings {
            listen: *listeners.1,
            max_body_bytes: 1024 * 1024,
            max_batch_bytes: None,
            rate_per_second: 2000.0,
            burst: 4000,
            client_ca: None,
            read_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
        },
        database: DatabaseSettings {
            url: database_url.to_string(),
        },
        tls: TlsSettings {
            cert: own.peer_cert,
            key: own.peer_key,
            api_cert: own.api_cert,
            api_key: own.api_key,
            api_tls12: false,
            sign_cert: Some(own.sign_cert),
            sign_key: Some(own.sign_key),
            watch_interval_ms: 10_000,
        },
        agreements: AgreementSettings {
            dir: agreements_dir.to_path_buf(),
        },
        delivery,
        peers: peers
            .iter()
            .map(|(cc, url)| PeerSettings {
                country: cc.clone(),
                base_url: url.clone(),
                ca: CountryPaths::new(certs_dir, cc).ca_cert,
                crl: None,
            })
            .collect(),
        tokens: tokens
            .iter()
            .map(|(name, role, token)| TokenSettings {
                name: name.clone(),
                role: *role,
                sha256: hash_token(token),
                serves: None,
            })
            .collect(),
        encryption: crate::store::seal::EncryptionSettings {
            active_key: "k1".into(),
            keys: vec![crate::store::seal::KeySettings {
                id: "k1".into(),
                file: Some(key_file.to_path_buf()),
                env: None,
            }],
            search_key: None,
        },
        client_certs: Vec::new(),
        calendar: crate::domain::calendar::Calendar::default(),
        timers: crate::config::TimerSettings::default(),
        alerts: crate::config::AlertSettings::default(),
        statistics: crate::config::StatisticsSettings::default(),
        reports: crate::config::ReportSettings::default(),
    }
}

/// A client of one gateway's local API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    client: reqwest::Client,
    base: String,
    token: String,
}

/// A response: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl ApiClient {
    pub fn new(
        api_addr: std::net::SocketAddr,
        api_ca: &Path,
        token: &str,
    ) -> Result<Self, TlsError> {
        let ca = tls::load_certs(api_ca)?;
        let config = tls::api_client_config(&ca)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self {
            client,
            base: format!("https://127.0.0.1:{}", api_addr.port()),
            token: token.to_string(),
        })
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_string(),
            ..self.clone()
        }
    }

    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Reply { status, body }
    }

    pub async fn submit(&self, message: &Value) -> Result<Reply, reqwest::Error> {
        let resp = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(&self.token)
            .json(message)
            .send()
            .await?;
        Ok(Self::reply(resp).await)
    }

    pub async fn get(&self, path: &str) -> Result<Reply, reqwest::Error> {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(Self::reply(resp).await)
    }

    /// `GET` of a page that is not JSON: its status and text.
    pub async fn get_text(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    /// Sends any request; for tests of refusals.
    pub fn raw(&self) -> (&reqwest::Client, &str, &str) {
        (&self.client, &self.base, &self.token)
    }

    /// Polls a message's status until it leaves `queued`/`delivering`.
    pub async fn wait_final(&self, message_id: &str, timeout: Duration) -> Option<Value> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(r) = self.get(&format!("/v1/messages/{message_id}")).await {
                let state = r.body["state"].as_str().unwrap_or("");
                if !matches!(state, "queued" | "delivering" | "") {
                    return Some(r.body);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// One running node of a [`DevNet`].
pub struct DevNode {
    pub gateway: RunningGateway,
    pub api: ApiClient,
    pub database_url: String,
}

/// Several gateways on 127.0.0.1, each with its own SQLite file in `data_dir`.
pub struct DevNet {
    pub nodes: BTreeMap<String, DevNode>,
}

/// The caseworker token every DevNet node accepts.
pub const DEVNET_TOKEN: &str = "devnet-caseworker-token";

impl DevNet {
    pub async fn start(
        countries: &[&str],
        certs_dir: &Path,
        agreements_dir: &Path,
        data_dir: &Path,
        delivery: DeliverySettings,
    ) -> Result<Self, GatewayError> {
        let mut listeners = BTreeMap::new();
        for cc in countries {
            listeners.insert(
                cc.to_string(),
                Listeners::bind(([127, 0, 0, 1], 0).into(), ([127, 0, 0, 1], 0).into())?,
            );
        }
        let mut nodes = BTreeMap::new();
        for cc in countries {
            let l = listeners.remove(*cc).expect("bound above");
            let peers: Vec<(String, String)> = default_peers(cc, countries)
                .into_iter()
                .filter_map(|p| {
                    let other = listeners
                        .get(&p)
                        .map(|l| l.peer_addr())
                        .or_else(|| nodes.get(&p).map(|n: &DevNode| n.gateway.peer_addr))?;
                    Some((p, format!("https://127.0.0.1:{}", other.port())))
                })
                .collect();
            let db: PathBuf = data_dir.join(format!("{}.db", cc.to_ascii_lowercase()));
            let database_url = format!("sqlite://{}", db.display());
            let key_file = data_dir.join(format!("{}.key", cc.to_ascii_lowercase()));
            std::fs::write(&key_file, crate::store::seal::new_key_hex()).map_err(|e| {
                GatewayError::Config(format!("writing {}: {e}", key_file.display()))
            })?;
            let settings = node_settings(
                cc,
                certs_dir,
                agreements_dir,
                &database_url,
                (&l.peer_addr(), &l.api_addr()),
                &peers,
                &[(
                    format!("{cc}-case-system"),
                    Role::Caseworker,
                    DEVNET_TOKEN.to_string(),
                )],
                delivery.clone(),
                &key_file,
            );
            let gateway = Gateway::build_with(settings, l, crate::clock::system())
                .await?
                .spawn();
            let api = ApiClient::new(
                gateway.api_addr,
                &CountryPaths::new(certs_dir, cc).ca_cert,
                DEVNET_TOKEN,
            )?;
            nodes.insert(
                cc.to_string(),
                DevNode {
                    gateway,
                    api,
                    database_url,
                },
            );
        }
        Ok(Self { nodes })
    }

    pub fn api(&self, country: &str) -> &ApiClient {
        &self.nodes[country].api
    }

    pub async fn stop(self) {
        for (_, n) in self.nodes {
            n.gateway.stop().await;
        }
    }
}
