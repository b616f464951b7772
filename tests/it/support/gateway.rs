//! Gateways under test: settings for a node, gateways started in-process on
//! listeners the kernel bound (so every port is known before any settings
//! are written), gateways whose delivery worker the test drives with
//! [`Worker::step`], the KH–TH [`Pair`], and `homeward serve` child
//! processes that can be killed with SIGKILL and restarted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use homeward::app::delivery::Worker;
use homeward::clock::SharedClock;
use homeward::config::{DeliverySettings, Settings};
use homeward::domain::access::Role;
use homeward::gateway::{Gateway, Listeners, RunningGateway};
use homeward::tools::devnet::node_settings;
use tempfile::TempDir;

use super::client::Api;
use super::db::{database_url, key_file};
use super::pki::Pki;

pub const TOKEN: &str = "test-caseworker-token";
pub const OPERATOR_TOKEN: &str = "test-operator-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const ANALYST_TOKEN: &str = "test-analyst-token";

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
        probe_interval_ms: 250,
    }
}

/// Both ports of a node, bound by the kernel on 127.0.0.1: their addresses
/// are known (and held) before any settings are written.
pub fn bind() -> Listeners {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    Listeners::bind(any, any).expect("bind 127.0.0.1:0")
}

/// The addresses of bound listeners, as [`settings`] takes them.
pub fn addrs(listeners: &Listeners) -> (SocketAddr, SocketAddr) {
    (listeners.peer_addr(), listeners.api_addr())
}

/// An address on 127.0.0.1 where no gateway ever listens, for a peer that
/// is configured but never started: a socket the kernel bound but that
/// never listens, so connections are refused at once, and no other test can
/// be given the port while this lives.
pub struct Unreachable {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl Unreachable {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("bound address");
        Self {
            _socket: socket,
            addr,
        }
    }
}

/// A free 127.0.0.1 port, probed and released: only for a gateway that must
/// (re)start on an address known in advance, which a pre-bound listener
/// cannot give: `homeward serve` child processes that are killed and
/// restarted, and a peer that is down at first and starts later on the
/// address its partner already has. Below the kernel's ephemeral range, so
/// outgoing connections (which take ephemeral ports) never hold the port of
/// a gateway that restarts on it. Each is handed out once per test process,
/// or two tests running side by side could draw the same one.
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

/// Settings for `cc` listening on `addrs` (peer, local API) with the given
/// peers (country → peer API address).
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
            (format!("{cc}-admin"), Role::Admin, ADMIN_TOKEN.to_string()),
            (
                format!("{cc}-analyst"),
                Role::Analyst,
                ANALYST_TOKEN.to_string(),
            ),
        ],
        fast_delivery(),
        &key_file(data, cc),
    )
}

/// Settings for `cc` listening on `listeners`.
pub fn settings_for(
    pki: &Pki,
    cc: &str,
    data: &Path,
    listeners: &Listeners,
    peers: &[(&str, SocketAddr)],
) -> Settings {
    settings(pki, cc, data, addrs(listeners), peers)
}

/// Points `settings`' peer `cc` at `addr`.
pub fn set_peer(settings: &mut Settings, cc: &str, addr: SocketAddr) {
    let peer = settings
        .peers
        .iter_mut()
        .find(|p| p.country == cc)
        .unwrap_or_else(|| panic!("no peer {cc}"));
    peer.base_url = format!("https://127.0.0.1:{}", addr.port());
}

async fn build(settings: Settings, listeners: Listeners, clock: SharedClock) -> Gateway {
    assert_eq!(
        (settings.peer_api.listen, settings.local_api.listen),
        addrs(&listeners),
        "the settings name the addresses the listeners are bound to"
    );
    Gateway::build_with(settings, listeners, clock)
        .await
        .expect("gateway builds")
}

/// A gateway on `listeners` with its own delivery loop.
pub async fn start(settings: Settings, listeners: Listeners) -> RunningGateway {
    start_with(settings, listeners, homeward::clock::system()).await
}

pub async fn start_with(
    settings: Settings,
    listeners: Listeners,
    clock: SharedClock,
) -> RunningGateway {
    build(settings, listeners, clock).await.spawn()
}

/// A gateway that binds the addresses its settings name: for a peer that
/// starts late on an address its partner already has (see [`free_addr`]).
pub async fn start_at(settings: Settings, clock: SharedClock) -> RunningGateway {
    let listeners =
        Listeners::bind(settings.peer_api.listen, settings.local_api.listen).expect("bind");
    start_with(settings, listeners, clock).await
}

/// A gateway whose delivery worker does not run: the test drives it with
/// [`Worker::step`].
pub async fn start_manual(
    settings: Settings,
    listeners: Listeners,
) -> (RunningGateway, Arc<Worker>) {
    start_manual_with(settings, listeners, homeward::clock::system()).await
}

pub async fn start_manual_with(
    settings: Settings,
    listeners: Listeners,
    clock: SharedClock,
) -> (RunningGateway, Arc<Worker>) {
    let mut gateway = build(settings, listeners, clock).await;
    let worker = gateway.take_worker().expect("the worker is there");
    (gateway.spawn(), worker)
}

/// One step of a worker the test drives: claims what is due, sends it and
/// records every outcome; how many messages it settled.
pub async fn step(worker: &Arc<Worker>) -> usize {
    worker.step().await.expect("delivery step")
}

/// Steps `worker` once, when exactly the message `id` is due, and returns
/// its status as `api` shows it afterwards.
pub async fn step_one(worker: &Arc<Worker>, api: &Api, id: &str) -> serde_json::Value {
    assert_eq!(step(worker).await, 1, "one message due: {id}");
    let r = api.message(id).await.expect("message status");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Steps `worker` until nothing is due now; how many messages it settled in
/// all. (A case's next message is due once its head is settled; a retry is
/// not due at once, so this ends.)
pub async fn drain(worker: &Arc<Worker>) -> usize {
    let mut settled = 0;
    loop {
        match step(worker).await {
            0 => return settled,
            n => settled += n,
        }
    }
}

/// KH and TH with each other as peers (and KH with a VN that never
/// answers), on kernel-bound ports.
pub struct Pair {
    pub pki: Pki,
    pub data: TempDir,
    pub kh: RunningGateway,
    pub th: RunningGateway,
    /// KH's and TH's delivery workers, for a [`Pair::manual`].
    workers: Option<(Arc<Worker>, Arc<Worker>)>,
    _vn: Unreachable,
}

impl Pair {
    /// Both gateways with their own delivery loops.
    pub async fn start() -> Self {
        Self::launch(false).await
    }

    /// Both gateways with the delivery workers left to the test:
    /// [`Pair::kh_worker`], [`Pair::th_worker`].
    pub async fn manual() -> Self {
        Self::launch(true).await
    }

    async fn launch(manual: bool) -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().expect("tempdir");
        let vn = Unreachable::new();
        let (kh_l, th_l) = (bind(), bind());
        let kh_settings = settings_for(
            &pki,
            "KH",
            data.path(),
            &kh_l,
            &[("TH", th_l.peer_addr()), ("VN", vn.addr)],
        );
        let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
        let (kh, th, workers) = if manual {
            let (kh, kh_worker) = start_manual(kh_settings, kh_l).await;
            let (th, th_worker) = start_manual(th_settings, th_l).await;
            (kh, th, Some((kh_worker, th_worker)))
        } else {
            let kh = start(kh_settings, kh_l).await;
            let th = start(th_settings, th_l).await;
            (kh, th, None)
        };
        Self {
            pki,
            data,
            kh,
            th,
            workers,
            _vn: vn,
        }
    }

    pub fn kh_worker(&self) -> &Arc<Worker> {
        &self.workers.as_ref().expect("a Pair::manual").0
    }

    pub fn th_worker(&self) -> &Arc<Worker> {
        &self.workers.as_ref().expect("a Pair::manual").1
    }

    pub async fn stop(self) {
        self.th.stop().await;
        self.kh.stop().await;
    }
}

/// Polls `check` every 25 ms until it holds; panics after `timeout`. For
/// what runs on its own: delivery loops of the tests about them, child
/// processes, the timer scheduler.
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

/// A `homeward serve` child process, restartable, logging to a file. Its
/// addresses come from [`free_addr`]: the child binds them itself, again
/// after every restart.
pub struct Process {
    pub config: PathBuf,
    pub log: PathBuf,
    pub api: Api,
    pub child: Option<tokio::process::Child>,
    /// `HOMEWARD_LOG` of the child.
    pub log_filter: String,
}

impl Process {
    pub fn new(dir: &Path, settings: &Settings, api: Api) -> Self {
        Self::named(
            dir,
            &settings.node.country.to_ascii_lowercase(),
            settings,
            api,
        )
    }

    /// One of several instances of a node, with its own config and log file.
    pub fn named(dir: &Path, name: &str, settings: &Settings, api: Api) -> Self {
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
            if let Ok(r) = self.api.health().await
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
