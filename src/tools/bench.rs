//! `homeward bench`: measurements that are not tests. `bench timers` shows
//! that the timer scheduler's cost per wake-up does not grow with the
//! number of open timers (both of its queries use the `next_event_at`
//! index).

use std::time::Instant;

use serde_json::{Value, json};

use crate::app::timers::decide;
use crate::store::Store;
use crate::store::timers::{NewTimer, Side, TimerRow};

const REMINDERS: &[f64] = &[0.5, 0.8];

fn timer(i: usize, now: i64) -> NewTimer {
    // Due times spread over the coming 42 days, none due now.
    let started_at = now - 1000;
    let due_at = now + 60_000 + (i as i64 * 7919) % (42 * 86_400_000);
    NewTimer {
        case_ref: format!("TH-KH-2026-{:06}", i % 1_000_000),
        message_id: format!("bench-{i}"),
        message_type: "family-tracing.request".into(),
        expected_type: "family-tracing.result".into(),
        side: if i.is_multiple_of(2) {
            Side::AnswerDue
        } else {
            Side::AwaitingAnswer
        },
        peer: "TH".into(),
        agreement: "kh-th".into(),
        started_at,
        due_at,
        first_event_at: crate::domain::deadline::first_event(started_at, due_at, REMINDERS),
    }
}

/// One scheduler wake-up as the gateway does it: fire what is due, then ask
/// for the next due time. Returns the microseconds it took.
async fn wake_up(store: &Store, now: i64) -> Result<f64, crate::store::StoreError> {
    let start = Instant::now();
    let due = store.due_timers(now, 500).await?;
    let firings: Vec<(TimerRow, _)> = due
        .into_iter()
        .filter_map(|t| decide(&t, now, REMINDERS).map(|f| (t, f)))
        .collect();
    if !firings.is_empty() {
        store.apply_firings(&firings).await?;
    }
    let _next = store.next_timer_event().await?;
    Ok(start.elapsed().as_secs_f64() * 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures the median wake-up cost with `sizes` open timers, each wake-up
/// firing exactly one due timer.
pub async fn timers(sizes: &[usize], wakeups: usize) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        let store = Store::open(
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
            crate::store::seal::Sealer::ephemeral(),
        )
        .await?;
        let now = crate::clock::unix_ms(time::OffsetDateTime::now_utc());
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<NewTimer> = chunk.iter().map(|i| timer(*i, now)).collect();
            store.insert_timers(&batch).await?;
        }
        // One timer per wake-up comes due: they are inserted due in the past.
        let due: Vec<NewTimer> = (0..wakeups)
            .map(|k| {
                let mut t = timer(n + k, now);
                t.started_at = now - 10_000;
                t.due_at = now + 3_600_000;
                t.first_event_at = Some(now - 5_000 + k as i64);
                t
            })
            .collect();
        store.insert_timers(&due).await?;
        let mut samples = Vec::with_capacity(wakeups);
        for _ in 0..wakeups {
            samples.push(wake_up(&store, now).await?);
        }
        let idle: Vec<f64> = {
            let mut v = Vec::new();
            for _ in 0..wakeups {
                v.push(wake_up(&store, now).await?);
            }
            v
        };
        store.close().await;
        results.push(json!({
            "open_timers": n,
            "median_us_per_wakeup_firing_one": median(samples),
            "median_us_per_idle_wakeup": median(idle),
        }));
    }
    let first = results
        .first()
        .and_then(|r| r["median_us_per_wakeup_firing_one"].as_f64())
        .unwrap_or(1.0);
    let last = results
        .last()
        .and_then(|r| r["median_us_per_wakeup_firing_one"].as_f64())
        .unwrap_or(1.0);
    Ok(json!({
        "benchmark": "timer scheduler wake-up",
        "results": results,
        "ratio_largest_to_smallest": last / first,
    }))
}

// ---------------------------------------------------------------------------
// End to end: two gateway processes, real mutual TLS, SQLite.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::domain::access::Role;
use crate::tools::devnet::ApiClient;

/// What `homeward bench e2e` measures.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    pub messages: usize,
    pub concurrency: Vec<usize>,
    pub rate: u32,
    pub rate_seconds: u32,
    pub runs: usize,
    /// A PostgreSQL server (`postgres://...`) to run both gateways on, each
    /// in a fresh database dropped afterwards; SQLite files when `None`.
    pub database_url: Option<String>,
}

const BENCH_TOKEN: &str = "bench-caseworker";
const BENCH_OPERATOR: &str = "bench-operator";

struct Proc {
    child: std::process::Child,
    api: ApiClient,
    db: String,
}

/// The databases of one bench run: SQLite files in the run's directory, or
/// fresh databases on a PostgreSQL server (dropped by [`Databases::drop_all`]).
struct Databases {
    server: Option<String>,
    created: Vec<String>,
}

impl Databases {
    fn new(server: Option<&str>) -> Self {
        Self {
            server: server.map(String::from),
            created: Vec::new(),
        }
    }

    async fn url(&mut self, dir: &Path, cc: &str) -> anyhow::Result<String> {
        let lc = cc.to_ascii_lowercase();
        let Some(server) = &self.server else {
            return Ok(format!(
                "sqlite://{}",
                dir.join(format!("{lc}.db")).display()
            ));
        };
        use sqlx::Connection;
        let name = format!(
            "homeward_bench_{}_{}_{lc}",
            std::process::id(),
            self.created.len()
        );
        let mut conn = sqlx::PgConnection::connect(server).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        self.created.push(name.clone());
        let (base, query) = server.split_once('?').unwrap_or((server, ""));
        let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
        Ok(if query.is_empty() {
            format!("{root}/{name}")
        } else {
            format!("{root}/{name}?{query}")
        })
    }

    async fn drop_all(&mut self) -> anyhow::Result<()> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(server).await?;
        for name in self.created.drain(..) {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Context switches (voluntary and not) of every thread of `pid` so far:
/// each is a thread going to sleep or being pre-empted, so per message it
/// counts the wake-ups a message costs (a statement on SQLite is two: the
/// connection's thread and the task waiting for it).
fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(text) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        for line in text.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(total)
}

fn free_port() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A gateway configured but not yet started.
struct Prepared {
    config: std::path::PathBuf,
    api: ApiClient,
    db: String,
}

/// Starts a prepared gateway and waits until it answers.
async fn launch(p: Prepared) -> anyhow::Result<Proc> {
    // The gateways' own logs, when asked for (profiling a run).
    let child_log = std::env::var("HOMEWARD_BENCH_CHILD_LOG").ok();
    let output = || {
        if child_log.is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        }
    };
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(&p.config)
        .env("HOMEWARD_LOG", child_log.as_deref().unwrap_or("error"))
        .stdout(output())
        .stderr(output())
        .spawn()?;
    let proc = Proc {
        child,
        api: p.api,
        db: p.db,
    };
    let start = Instant::now();
    while proc
        .api
        .get("/v1/health")
        .await
        .map(|r| r.status != 200)
        .unwrap_or(true)
    {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "a gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(proc)
}

async fn start_pair(dir: &Path, dbs: &mut Databases) -> anyhow::Result<(Proc, Proc)> {
    let (th, kh) = prepare_pair(dir, dbs).await?;
    let th = launch(th).await?;
    let kh = launch(kh).await?;
    Ok((th, kh))
}

/// Configuration, PKI and databases of TH (the sender) and KH.
async fn prepare_pair(dir: &Path, dbs: &mut Databases) -> anyhow::Result<(Prepared, Prepared)> {
    crate::tls::pki::write_dev_pki(dir, &["KH", "TH"], 30)?;
    let agreements = dir.join("agreements");
    std::fs::create_dir_all(&agreements)?;
    let shipped = Path::new("config/agreements/kh-th.toml");
    let text = std::fs::read_to_string(shipped).map_err(|e| {
        anyhow::anyhow!("{}: {e} (run from the repository root)", shipped.display())
    })?;
    std::fs::write(agreements.join("kh-th.toml"), text)?;
    let kh = (free_port()?, free_port()?);
    let th = (free_port()?, free_port()?);
    let mut procs = Vec::new();
    for (cc, addrs, peer, peer_addr) in [("KH", kh, "TH", th.0), ("TH", th, "KH", kh.0)] {
        let lc = cc.to_ascii_lowercase();
        let key = dir.join(format!("{lc}.key"));
        std::fs::write(&key, crate::store::seal::new_key_hex())?;
        let db = dbs.url(dir, cc).await?;
        let mut settings = crate::tools::devnet::node_settings(
            cc,
            dir,
            &agreements,
            &db,
            (&addrs.0, &addrs.1),
            &[(
                peer.to_string(),
                format!("https://127.0.0.1:{}", peer_addr.port()),
            )],
            &[
                ("bench".into(), Role::Caseworker, BENCH_TOKEN.into()),
                (
                    "bench-operator".into(),
                    Role::Operator,
                    BENCH_OPERATOR.into(),
                ),
            ],
            crate::config::DeliverySettings {
                initial_backoff_ms: 50,
                max_backoff_ms: 1000,
                ..Default::default()
            },
            &key,
        );
        settings.local_api.rate_per_second = 1e9;
        settings.local_api.burst = u32::MAX;
        settings.peer_api.rate_per_second = 1e9;
        settings.peer_api.burst = u32::MAX;
        let config = dir.join(format!("{lc}.toml"));
        std::fs::write(&config, toml_text(&settings)?)?;
        let api = ApiClient::new(
            addrs.1,
            &crate::tls::pki::CountryPaths::new(dir, cc).ca_cert,
            BENCH_TOKEN,
        )?;
        procs.push(Prepared { config, api, db });
    }
    let th = procs.pop().expect("two");
    let kh = procs.pop().expect("two");
    Ok((th, kh))
}

/// Settings as TOML text (figment reads TOML; serde_json's value model maps onto it).
fn toml_text(settings: &crate::config::Settings) -> anyhow::Result<String> {
    let value = serde_json::to_value(settings)?;
    let mut out = String::new();
    write_toml(&mut out, "", &value);
    Ok(out)
}

fn toml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_scalar).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{ {} }}",
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", toml_scalar(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Null => "\"\"".into(),
    }
}

fn write_toml(out: &mut String, prefix: &str, v: &Value) {
    use std::fmt::Write;
    let Some(obj) = v.as_object() else { return };
    for (k, v) in obj {
        let is_table = v.is_object();
        let is_table_array = v
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object));
        if !is_table && !is_table_array && !v.is_null() {
            let _ = writeln!(out, "{k} = {}", toml_scalar(v));
        }
    }
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if v.is_object() {
            let _ = writeln!(out, "\n[{name}]");
            write_toml(out, &name, v);
        } else if let Some(items) = v
            .as_array()
            .filter(|a| !a.is_empty() && a.iter().all(Value::is_object))
        {
            for item in items {
                let _ = writeln!(out, "\n[[{name}]]");
                write_toml(out, &name, item);
            }
        }
    }
}

/// A synthetic ~2 KB referral on its own case.
fn bench_message(i: usize) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": format!("TH-KH-2026-{:06}", i % 1_000_000),
        "type": "referral.notify",
        "schema_version": 1,
        "to": "KH",
        "payload": {
            "person": {"name_native": "សាកល្បង", "name_latin": format!("Bench Person {i}"), "sex": "male",
                       "estimated_age": 30, "presumed_minor": false, "nationality_claimed": "KH"},
            "identification": {"date": "2026-11-01", "place": "Synthetic Port", "identifying_agency": "Synthetic Agency",
                               "status": "presumed", "reflection_period_start": "2026-11-01"},
            "exploitation_type": "fishing",
            "placement": {"shelter_name": "Synthetic Shelter", "shelter_type": "government", "city": "Synthetic City", "country": "TH"},
            "needs": {"medical": true, "psychosocial": true, "legal": false, "interpreter_language": "km",
                      "notes": "x".repeat(1200)},
            "risk_level": "low",
            "consent": {"to_share_information": true, "to_return": true, "recorded_by": "Synthetic worker",
                        "recorded_at": "2026-11-02T08:00:00Z"}
        }
    })
}

/// KH's count of received messages, from its `/metrics`.
async fn received(kh: &Proc) -> u64 {
    let (client, base, _) = kh.api.raw();
    let Ok(r) = client
        .get(format!("{base}/metrics"))
        .bearer_auth(BENCH_OPERATOR)
        .send()
        .await
    else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("homeward_messages_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn read_pool(db: &str) -> anyhow::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    let url = if db.starts_with("sqlite:") {
        format!("{db}?mode=ro")
    } else {
        db.to_string()
    };
    Ok(sqlx::AnyPool::connect(&url).await?)
}

async fn latencies(db: &str, since_seq: i64) -> anyhow::Result<Vec<f64>> {
    let pool = read_pool(db).await?;
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT delivered_at - submitted_at FROM outbox WHERE seq > $1 AND state = 'delivered' ORDER BY 1",
    )
    .bind(since_seq)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(rows.into_iter().map(|(ms,)| ms as f64).collect())
}

async fn max_seq(db: &str) -> anyhow::Result<i64> {
    let pool = read_pool(db).await?;
    let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM outbox")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(seq.unwrap_or(0))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Submits `n` messages from `w` concurrent submitters, optionally paced to
/// `rate` per second; returns (submit seconds, delivered seconds).
async fn load(
    th: &Proc,
    kh: &Proc,
    n: usize,
    w: usize,
    rate: Option<u32>,
    offset: usize,
) -> anyhow::Result<(f64, f64)> {
    let before = received(kh).await;
    let start = Instant::now();
    submit_all(th, n, w, rate, offset).await?;
    let submitted = start.elapsed().as_secs_f64();
    while received(kh).await < before + n as u64 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(3600),
            "delivery did not finish in an hour"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((submitted, start.elapsed().as_secs_f64()))
}

/// Submits `n` messages from `w` concurrent submitters to `th`, each
/// waiting for its `202`, optionally paced to `rate` per second.
async fn submit_all(
    th: &Proc,
    n: usize,
    w: usize,
    rate: Option<u32>,
    offset: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..w {
        let (api, next) = (th.api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                if let Some(rate) = rate {
                    let at = Duration::from_secs_f64(i as f64 / f64::from(rate));
                    if let Some(wait) = at.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let r = api.submit(&bench_message(offset + i)).await?;
                anyhow::ensure!(
                    r.status == 202,
                    "submission refused: {} {}",
                    r.status,
                    r.body
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// What `homeward bench backlog` measures.
#[derive(Debug, Clone)]
pub struct BacklogOptions {
    pub messages: usize,
    pub database_url: Option<String>,
}

fn rss_mb(pid: u32, field: &str) -> f64 {
    proc_status(pid, field).map_or(f64::NAN, |kb| kb as f64 / 1024.0)
}

/// A long outage: `messages` queue at TH for a peer that does not answer,
/// then the peer comes back. Reports TH's memory with the backlog and the
/// drain rate in each tenth of the backlog (steady means no slowdown as the
/// backlog shrinks or grows).
pub async fn backlog(opts: &BacklogOptions) -> anyhow::Result<Value> {
    let n = opts.messages.max(10);
    let dir = tempfile::tempdir()?;
    let mut dbs = Databases::new(opts.database_url.as_deref());
    let (th, kh) = prepare_pair(dir.path(), &mut dbs).await?;
    let th = launch(th).await?;
    let pid = th.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_mb(pid, "VmRSS:");
    let start = Instant::now();
    submit_all(&th, n, 64, None, 0).await?;
    let queue_seconds = start.elapsed().as_secs_f64();
    let queued_rss = rss_mb(pid, "VmRSS:");
    let queued_peak = rss_mb(pid, "VmHWM:");
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);

    let kh = launch(kh).await?;
    let back = Instant::now();
    let tenth = (n / 10) as u64;
    let mut marks = Vec::with_capacity(10);
    let mut last = 0.0;
    loop {
        let got = received(&kh).await;
        while (marks.len() as u64) < 10 && got >= tenth * (marks.len() as u64 + 1) {
            let t = back.elapsed().as_secs_f64();
            marks.push(tenth as f64 / (t - last).max(1e-6));
            last = t;
        }
        if got >= n as u64 {
            break;
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(3600),
            "the backlog did not drain in an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_seconds = back.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let peak_rss = rss_mb(pid, "VmHWM:");
    drop((th, kh));
    dbs.drop_all().await?;
    let first = marks.first().copied().unwrap_or(f64::NAN);
    let last_rate = marks.last().copied().unwrap_or(f64::NAN);
    Ok(json!({
        "benchmark": "backlog for an unreachable peer, then drained",
        "database": if opts.database_url.is_some() { "postgres" } else { "sqlite" },
        "messages": n,
        "queued_per_s": n as f64 / queue_seconds,
        "sender_idle_rss_mb": idle_rss,
        "sender_rss_mb_with_backlog": queued_rss,
        "sender_peak_rss_mb_while_queueing": queued_peak,
        "sender_peak_rss_mb_overall": peak_rss,
        "drained_per_s": n as f64 / drain_seconds,
        "drain_per_s_by_tenth": marks,
        "ratio_last_tenth_to_first": last_rate / first,
        "sender_cpu_seconds_per_1000_drained": cpu / n as f64 * 1000.0,
    }))
}

/// The disk's synchronous commit rate where the bench keeps its databases:
/// 4 KiB appended and `fdatasync`ed, over and over, for `seconds`. A commit
/// on SQLite (`synchronous=FULL`) costs one such sync, so this bounds what
/// one submitter waiting for each `202` can reach.
fn fsync_rate(dir: &Path, seconds: f64) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn median_of(values: &[f64]) -> f64 {
    median(values.to_vec())
}

/// Runs the end-to-end benchmark; every figure is the median of `runs`.
pub async fn e2e(opts: &E2eOptions) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    let mut offset = 0;
    for &w in &opts.concurrency {
        let mut accepted = Vec::new();
        let mut delivered = Vec::new();
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        let mut cpu = Vec::new();
        let mut switches = Vec::new();
        let mut idle_rss = Vec::new();
        let mut peak_rss = Vec::new();
        for _ in 0..opts.runs {
            let dir = tempfile::tempdir()?;
            let mut dbs = Databases::new(opts.database_url.as_deref());
            let (th, kh) = start_pair(dir.path(), &mut dbs).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let pids = [th.child.id(), kh.child.id()];
            idle_rss.push(
                pids.iter()
                    .filter_map(|p| proc_status(*p, "VmRSS:"))
                    .map(|kb| kb as f64 / 1024.0)
                    .fold(0.0, f64::max),
            );
            let cpu_before: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
            let switches_before: u64 = pids.iter().filter_map(|p| context_switches(*p)).sum();
            let since = max_seq(&th.db).await?;
            let (sub, del) = load(&th, &kh, opts.messages, w, None, offset).await?;
            offset += opts.messages;
            let cpu_after: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
            let switches_after: u64 = pids.iter().filter_map(|p| context_switches(*p)).sum();
            switches
                .push(switches_after.saturating_sub(switches_before) as f64 / opts.messages as f64);
            accepted.push(opts.messages as f64 / sub);
            delivered.push(opts.messages as f64 / del);
            cpu.push((cpu_after - cpu_before) / opts.messages as f64 * 1000.0);
            peak_rss.push(
                pids.iter()
                    .filter_map(|p| proc_status(*p, "VmHWM:"))
                    .map(|kb| kb as f64 / 1024.0)
                    .fold(0.0, f64::max),
            );
            let lat = latencies(&th.db, since).await?;
            p50.push(pct(&lat, 0.5));
            p99.push(pct(&lat, 0.99));
            drop((th, kh));
            dbs.drop_all().await?;
        }
        results.push(json!({
            "concurrency": w,
            "messages": opts.messages,
            "accepted_per_s": median_of(&accepted),
            "delivered_per_s": median_of(&delivered),
            "latency_ms_p50": median_of(&p50),
            "latency_ms_p99": median_of(&p99),
            "cpu_seconds_per_1000_messages_both_gateways": median_of(&cpu),
            "context_switches_per_message_both_gateways": median_of(&switches),
            "idle_rss_mb_max_gateway": median_of(&idle_rss),
            "peak_rss_mb_max_gateway": median_of(&peak_rss),
        }));
    }
    let fsyncs = {
        let dir = tempfile::tempdir()?;
        let samples: Vec<f64> = (0..3)
            .map(|_| fsync_rate(dir.path(), 1.0))
            .collect::<std::io::Result<_>>()?;
        median(samples)
    };
    // Latency at a fixed offered rate.
    let mut fixed = Vec::new();
    for _ in 0..opts.runs {
        let dir = tempfile::tempdir()?;
        let mut dbs = Databases::new(opts.database_url.as_deref());
        let (th, kh) = start_pair(dir.path(), &mut dbs).await?;
        let n = (opts.rate * opts.rate_seconds) as usize;
        let since = max_seq(&th.db).await?;
        let (sub, _) = load(&th, &kh, n, 64, Some(opts.rate), offset).await?;
        offset += n;
        let lat = latencies(&th.db, since).await?;
        fixed.push((n as f64 / sub, pct(&lat, 0.5), pct(&lat, 0.99)));
        drop((th, kh));
        dbs.drop_all().await?;
    }
    let backend = match &opts.database_url {
        Some(_) => "PostgreSQL (one database per gateway)",
        None => "SQLite (synchronous=FULL)",
    };
    Ok(json!({
        "benchmark": format!("end to end, two gateway processes on 127.0.0.1, mutual TLS, {backend}"),
        "database": if opts.database_url.is_some() { "postgres" } else { "sqlite" },
        "runs_per_figure": opts.runs,
        "disk_fsyncs_per_s": fsyncs,
        "saturation": results,
        "fixed_rate": {
            "offered_per_s": opts.rate,
            "achieved_per_s": median_of(&fixed.iter().map(|f| f.0).collect::<Vec<_>>()),
            "latency_ms_p50": median_of(&fixed.iter().map(|f| f.1).collect::<Vec<_>>()),
            "latency_ms_p99": median_of(&fixed.iter().map(|f| f.2).collect::<Vec<_>>()),
        },
    }))
}
