//! Shared test helpers: a throwaway PKI, gateways on random 127.0.0.1 ports
//! with SQLite files in a temporary directory, clients for both APIs, and
//! synthetic messages.
#![allow(dead_code)]

pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use homeward::app::delivery::Worker;
use homeward::config::{DeliverySettings, Settings};
use homeward::domain::access::Role;
use homeward::gateway::{Gateway, Listeners, RunningGateway};
use homeward::tls::pki::{self, CountryPaths};
use homeward::tls::{self, Identity};
use homeward::tools::devnet::{ApiClient, node_settings};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const TOKEN: &str = "test-caseworker-token";
pub const OPERATOR_TOKEN: &str = "test-operator-token";
pub const COUNTRIES: &[&str] = &["KH", "TH", "VN", "MY"];

/// A fresh PKI for the four countries, plus a rogue CA that also claims
/// to be Thailand's (in `rogue/th`), in a temporary directory.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        pki::write_dev_pki(dir.path(), COUNTRIES, 30).expect("test PKI");
        let rogue = pki::generate_country("TH", "rogue", 30).expect("rogue PKI");
        pki::write_country(&dir.path().join("rogue"), &rogue).expect("rogue PKI written");
        Self { dir }
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

pub fn agreements_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/agreements")
}

pub fn fast_delivery() -> DeliverySettings {
    DeliverySettings {
        initial_backoff_ms: 25,
        max_backoff_ms: 250,
        concurrency: 16,
        request_timeout_ms: 5_000,
        deadline_hours: 72,
        lease_ms: 6_000,
    }
}

/// A free 127.0.0.1 port below the kernel's ephemeral range, so that
/// outgoing connections (which take ephemeral ports) never hold the port of
/// a gateway that restarts on it. The port is free when probed, not held:
/// each is handed out once per test process, or two tests running side by
/// side could draw the same one and the second to bind it would fail.
pub fn free_addr() -> SocketAddr {
    use rand::Rng;
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static HANDED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut handed = HANDED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..32_000);
        if handed.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed.insert(port);
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free port found in 20000..32000");
}

/// The at-rest key of `cc` in `data`, made on first use.
pub fn key_file(data: &Path, cc: &str) -> PathBuf {
    let path = data.join(format!("{}.key", cc.to_ascii_lowercase()));
    if !path.exists() {
        std::fs::write(&path, homeward::store::seal::new_key_hex()).expect("key written");
    }
    path
}

/// Settings for `cc` with the given peers (country → peer API address).
pub fn settings(
    pki: &Pki,
    cc: &str,
    data: &Path,
    addrs: (SocketAddr, SocketAddr),
    peers: &[(&str, SocketAddr)],
) -> Settings {
    let peers: Vec<(String, String)> = peers
        .iter()
        .map(|(p, a)| (p.to_string(), format!("https://127.0.0.1:{}", a.port())))
        .collect();
    node_settings(
        cc,
        pki.path(),
        &agreements_dir(),
        &database_url(data, cc),
        (&addrs.0, &addrs.1),
        &peers,
        &[
            (
                format!("{cc}-case-system"),
                Role::Caseworker,
                TOKEN.to_string(),
            ),
            (
                format!("{cc}-operator"),
                Role::Operator,
                OPERATOR_TOKEN.to_string(),
            ),
        ],
        fast_delivery(),
        &key_file(data, cc),
    )
}

/// The database of node `cc` whose files live in `data`: a SQLite file
/// there, or (with `HOMEWARD_TEST_STORE=postgres`) a fresh PostgreSQL
/// database, the same one each time it is asked for.
pub fn database_url(data: &Path, cc: &str) -> String {
    if !pg::suites_on_postgres() {
        let db = data.join(format!("{}.db", cc.to_ascii_lowercase()));
        return format!("sqlite://{}", db.display());
    }
    static URLS: std::sync::Mutex<Vec<(PathBuf, String, String)>> =
        std::sync::Mutex::new(Vec::new());
    let mut urls = URLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, url)) = urls.iter().find(|(d, c, _)| d == data && c == cc) {
        return url.clone();
    }
    let url = pg::fresh_database().expect("PostgreSQL test database");
    urls.push((data.to_path_buf(), cc.to_string(), url.clone()));
    url
}

/// A plain connection pool on a node's database, behind the gateway's back.
pub async fn any_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.expect("database opens")
}

/// Every row of every table of a PostgreSQL database, as text.
pub async fn database_text(url: &str) -> String {
    let pool = any_pool(url).await;
    let mut text = String::new();
    for table in [
        "outbox",
        "inbox",
        "case_log",
        "timers",
        "case_events",
        "audit",
        "purged_cases",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&pool)
            .await
            .expect("table dump");
        for (row,) in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    pool.close().await;
    text
}

pub async fn start(settings: Settings) -> RunningGateway {
    start_with(settings, homeward::clock::system()).await
}

pub async fn start_with(settings: Settings, clock: homeward::clock::SharedClock) -> RunningGateway {
    let listeners =
        Listeners::bind(settings.peer_api.listen, settings.local_api.listen).expect("bind");
    Gateway::build_with(settings, listeners, clock)
        .await
        .expect("gateway builds")
        .spawn()
}

/// A gateway whose delivery worker does not run: the test drives it with
/// [`Worker::step`].
pub async fn start_manual(settings: Settings) -> (RunningGateway, Arc<Worker>) {
    let listeners =
        Listeners::bind(settings.peer_api.listen, settings.local_api.listen).expect("bind");
    let mut gateway = Gateway::build_with(settings, listeners, homeward::clock::system())
        .await
        .expect("gateway builds");
    let worker = gateway.take_worker().expect("the worker is there");
    (gateway.spawn(), worker)
}

pub fn api(pki: &Pki, cc: &str, addr: SocketAddr) -> ApiClient {
    ApiClient::new(addr, &pki.paths(cc).ca_cert, TOKEN).expect("api client")
}

/// KH and TH with each other as peers.
pub struct Pair {
    pub pki: Pki,
    pub data: TempDir,
    pub kh: RunningGateway,
    pub th: RunningGateway,
}

impl Pair {
    pub async fn start() -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().expect("tempdir");
        let kh_addrs = (free_addr(), free_addr());
        let th_addrs = (free_addr(), free_addr());
        let kh = start(settings(
            &pki,
            "KH",
            data.path(),
            kh_addrs,
            &[("TH", th_addrs.0), ("VN", free_addr())],
        ))
        .await;
        let th = start(settings(
            &pki,
            "TH",
            data.path(),
            th_addrs,
            &[("KH", kh_addrs.0)],
        ))
        .await;
        Self { pki, data, kh, th }
    }

    pub fn kh_api(&self) -> ApiClient {
        api(&self.pki, "KH", self.kh.api_addr)
    }

    pub fn th_api(&self) -> ApiClient {
        api(&self.pki, "TH", self.th.api_addr)
    }

    /// A client of KH's peer port presenting `identity` (or none).
    pub fn kh_peer_client(&self, identity: Option<&Identity>) -> reqwest::Client {
        let ca = tls::load_certs(&self.pki.paths("KH").ca_cert).expect("ca");
        let config = tls::peer_client_config(identity, &ca, "KH").expect("client config");
        reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// POSTs `msg` to KH's peer port with `client`; status and JSON body.
    pub async fn peer_post(&self, client: &reqwest::Client, msg: &Value) -> (u16, Value) {
        let resp = client
            .post(self.kh_peer_url())
            .json(msg)
            .send()
            .await
            .expect("peer port answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub fn kh_peer_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/peer/v1/messages",
            self.kh.peer_addr.port()
        )
    }

    pub async fn stop(self) {
        self.th.stop().await;
        self.kh.stop().await;
    }
}

/// A synthetic referral payload; nothing here names a real person.
pub fn referral_payload(n: usize) -> Value {
    json!({
        "person": {
            "name_native": format!("តេស្ត {n}"),
            "name_latin": format!("Test Person {n}"),
            "sex": if n.is_multiple_of(2) { "female" } else { "male" },
            "estimated_age": 20 + (n % 30),
            "presumed_minor": false,
            "nationality_claimed": "KH",
            "nationality_verified": false
        },
        "identification": {
            "date": "2026-11-01",
            "place": "Synthetic Port",
            "identifying_agency": "Synthetic Provincial Office",
            "status": "presumed",
            "reflection_period_start": "2026-11-01"
        },
        "exploitation_type": "fishing",
        "placement": {
            "shelter_name": "Synthetic Shelter",
            "shelter_type": "government",
            "city": "Synthetic City",
            "country": "TH"
        },
        "needs": {"medical": true, "psychosocial": true, "legal": false, "interpreter_language": "km"},
        "risk_level": "low",
        "consent": {
            "to_share_information": true,
            "to_return": true,
            "recorded_by": "Synthetic social worker",
            "recorded_at": "2026-11-02T08:00:00Z"
        }
    })
}

pub fn case_ref(from: &str, to: &str, serial: usize) -> String {
    format!("{from}-{to}-2026-{serial:06}")
}

/// A full referral envelope from `from` to `to`.
pub fn referral(from: &str, to: &str, case: &str, n: usize) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": case,
        "type": "referral.notify",
        "schema_version": 1,
        "from": from,
        "to": to,
        "in_reply_to": null,
        "created_at": "2026-11-22T09:30:00Z",
        "payload": referral_payload(n),
    })
}

pub fn acknowledge(from: &str, to: &str, case: &str, in_reply_to: &str) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": case,
        "type": "referral.acknowledge",
        "schema_version": 1,
        "from": from,
        "to": to,
        "in_reply_to": in_reply_to,
        "created_at": "2026-11-22T10:30:00Z",
        "payload": {
            "accepted": true,
            "receiver_case_number": "SYN-2026-0001",
            "responsible_officer": {"name": "Synthetic Officer", "organisation": "Synthetic Department"}
        }
    })
}

/// Every message in a node's inbox feed, paging through it.
pub async fn read_inbox(api: &ApiClient) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let r = api
            .get(&format!("/v1/inbox?after={cursor}&limit=1000"))
            .await
            .expect("inbox");
        assert_eq!(r.status, 200, "{}", r.body);
        let batch = r.body["messages"].as_array().cloned().unwrap_or_default();
        if batch.is_empty() {
            return all;
        }
        cursor = r.body["next_cursor"].as_str().expect("cursor").to_string();
        all.extend(batch);
    }
}

/// The receiver's inbox holds exactly the `sent` messages (in submission
/// order), each once, and per case in submission order.
pub fn assert_exactly_once_in_order(inbox: &[Value], sent: &[&Value]) {
    use std::collections::{BTreeMap, BTreeSet};
    let id = |m: &Value| m["message_id"].as_str().expect("message_id").to_string();
    let ids: Vec<String> = inbox.iter().map(id).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), sent.len(), "no message twice, none extra");
    assert_eq!(unique.len(), sent.len(), "no message twice");
    let expected_ids: BTreeSet<String> = sent.iter().map(|m| id(m)).collect();
    assert!(
        unique == expected_ids,
        "exactly the accepted messages arrived"
    );
    let by_case = |ms: &mut dyn Iterator<Item = &Value>| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in ms {
            map.entry(m["case_ref"].as_str().expect("case_ref").to_string())
                .or_default()
                .push(id(m));
        }
        map
    };
    assert!(
        by_case(&mut inbox.iter()) == by_case(&mut sent.iter().copied()),
        "per case, the receiver got messages in submission order"
    );
}

pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// The payload of a published valid example of `message_type` whose payload
/// satisfies `pick` (so tests follow the schemas as they evolve).
pub fn example_payload(message_type: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples")
        .join(message_type);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| f.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("valid-")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(&std::fs::read_to_string(f).unwrap()).unwrap()["payload"]
                .clone()
        })
        .find(|p| pick(p))
        .unwrap_or_else(|| panic!("no valid {message_type} example matches"))
}

/// A full envelope around `payload`.
pub fn envelope(
    message_type: &str,
    from: &str,
    to: &str,
    case: &str,
    in_reply_to: Option<&str>,
    payload: Value,
) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": case,
        "type": message_type,
        "schema_version": 1,
        "from": from,
        "to": to,
        "in_reply_to": in_reply_to,
        "created_at": "2026-11-22T11:00:00Z",
        "payload": payload,
    })
}

/// A `referral.update` with a synthetic placement change.
pub fn update(from: &str, to: &str, case: &str, n: usize) -> Value {
    let mut payload = example_payload("referral.update", |p| p["reason"] == "placement_changed");
    payload["summary"] = json!(format!("synthetic update {n}"));
    envelope("referral.update", from, to, case, None, payload)
}

/// A `homeward serve` child process, restartable, logging to a file.
pub struct Process {
    pub config: PathBuf,
    pub log: PathBuf,
    pub api: ApiClient,
    pub child: Option<tokio::process::Child>,
    /// `HOMEWARD_LOG` of the child.
    pub log_filter: String,
}

impl Process {
    pub fn new(dir: &Path, settings: &Settings, api: ApiClient) -> Self {
        Self::named(
            dir,
            &settings.node.country.to_ascii_lowercase(),
            settings,
            api,
        )
    }

    /// One of several instances of a node, with its own config and log file.
    pub fn named(dir: &Path, name: &str, settings: &Settings, api: ApiClient) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            toml::to_string(settings).expect("settings as TOML"),
        )
        .expect("config written");
        Self {
            config,
            log: dir.join(format!("{name}.log")),
            api,
            child: None,
            log_filter: "warn".into(),
        }
    }

    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("HOMEWARD_LOG", &self.log_filter)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("homeward serve starts");
        self.child = Some(child);
        let start = tokio::time::Instant::now();
        loop {
            if let Ok(r) = self.api.get("/v1/health").await
                && r.status == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("homeward serve exited with {status} at start; log tail:\n{tail}");
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("the gateway did not answer within 60s; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
        }
    }
}
