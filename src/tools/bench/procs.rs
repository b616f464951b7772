//! Two gateway processes for a bench run (TH sends, KH receives): their
//! configuration, PKI and databases, how they start, and what the bench
//! reads of them (CPU, context switches, RSS, latencies from the store).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::domain::access::Role;
use crate::tools::devnet::ApiClient;

pub(super) const BENCH_TOKEN: &str = "bench-caseworker";
pub(super) const BENCH_OPERATOR: &str = "bench-operator";

pub(super) struct Proc {
    pub(super) child: std::process::Child,
    pub(super) api: ApiClient,
    pub(super) db: String,
}

/// The databases of one bench run: SQLite files in the run's directory, or
/// fresh databases on a PostgreSQL server (dropped by [`Databases::drop_all`]).
pub(super) struct Databases {
    pub(super) server: Option<String>,
    pub(super) created: Vec<String>,
}

impl Databases {
    pub(super) fn new(server: Option<&str>) -> Self {
        Self {
            server: server.map(String::from),
            created: Vec::new(),
        }
    }

    pub(super) async fn url(&mut self, dir: &Path, cc: &str) -> anyhow::Result<String> {
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

    pub(super) async fn drop_all(&mut self) -> anyhow::Result<()> {
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

pub(super) fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of a process.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Bytes `pid` has sent to storage so far (`write_bytes` of
/// `/proc/<pid>/io`): for a gateway, its WAL frames, the checkpoints that
/// copy them into the database file, and its log. Each commit's fsync
/// cleans the pages it wrote, so the next commit's writes count again.
pub(super) fn disk_bytes_written(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// Context switches (voluntary and not) of every thread of `pid` so far:
/// each is a thread going to sleep or being pre-empted, so per message it
/// counts the wake-ups a message costs (a statement on SQLite is two: the
/// connection's thread and the task waiting for it).
pub(super) fn context_switches(pid: u32) -> Option<u64> {
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

pub(super) fn free_port() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A gateway configured but not yet started.
pub(super) struct Prepared {
    pub(super) config: std::path::PathBuf,
    pub(super) api: ApiClient,
    pub(super) db: String,
}

/// Starts a prepared gateway and waits until it answers.
pub(super) async fn launch(p: Prepared) -> anyhow::Result<Proc> {
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

/// The pair, each node with its signing key or (`signed` false) without.
pub(super) async fn start_pair_signed(
    dir: &Path,
    dbs: &mut Databases,
    signed: bool,
) -> anyhow::Result<(Proc, Proc)> {
    let (th, kh) = prepare_pair(dir, dbs, bench_delivery()).await?;
    if !signed {
        for p in [&th, &kh] {
            let text = std::fs::read_to_string(&p.config)?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("sign_cert") && !l.starts_with("sign_key"))
                .collect();
            std::fs::write(&p.config, kept.join("\n"))?;
        }
    }
    let th = launch(th).await?;
    let kh = launch(kh).await?;
    Ok((th, kh))
}

/// The benches' retry policy: short backoff, so a run is not a wait.
pub(super) fn bench_delivery() -> crate::config::DeliverySettings {
    crate::config::DeliverySettings {
        initial_backoff_ms: 50,
        max_backoff_ms: 1000,
        ..Default::default()
    }
}

/// Configuration, PKI and databases of TH (the sender) and KH, both with
/// the retry policy `delivery`.
pub(super) async fn prepare_pair(
    dir: &Path,
    dbs: &mut Databases,
    delivery: crate::config::DeliverySettings,
) -> anyhow::Result<(Prepared, Prepared)> {
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
            delivery.clone(),
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
pub(super) fn toml_text(settings: &crate::config::Settings) -> anyhow::Result<String> {
    let value = serde_json::to_value(settings)?;
    let mut out = String::new();
    write_toml(&mut out, "", &value);
    Ok(out)
}

pub(super) fn toml_scalar(v: &Value) -> String {
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

pub(super) fn write_toml(out: &mut String, prefix: &str, v: &Value) {
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
pub(super) fn bench_message(i: usize) -> Value {
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
pub(super) async fn received(kh: &Proc) -> u64 {
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

/// The integers `sql` returns with `$1` bound to `arg`, read from the
/// gateway's database behind its back (read-only on SQLite).
async fn integers(db: &str, sql: &'static str, arg: i64) -> anyhow::Result<Vec<Option<i64>>> {
    if let Some(path) = db.strip_prefix("sqlite:") {
        let path = path
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or("")
            .to_string();
        return Ok(tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            let mut st = conn.prepare(sql)?;
            let n = st.parameter_count();
            let rows = if n == 0 {
                st.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                st.query_map([arg], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?
            };
            Ok::<_, rusqlite::Error>(rows)
        })
        .await??);
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await?;
    let mut q = sqlx::query_scalar::<_, Option<i64>>(sql);
    if sql.contains("$1") {
        q = q.bind(arg);
    }
    let rows = q.fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(rows)
}

pub(super) async fn latencies(db: &str, since_seq: i64) -> anyhow::Result<Vec<f64>> {
    let rows = integers(
        db,
        "SELECT delivered_at - submitted_at FROM outbox WHERE seq > $1 AND state = 'delivered' ORDER BY 1",
        since_seq,
    )
    .await?;
    Ok(rows.into_iter().flatten().map(|ms| ms as f64).collect())
}

pub(super) async fn max_seq(db: &str) -> anyhow::Result<i64> {
    let rows = integers(db, "SELECT MAX(seq) FROM outbox", 0).await?;
    Ok(rows.into_iter().flatten().next().unwrap_or(0))
}

pub(super) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Submits `n` messages from `w` concurrent submitters, optionally paced to
/// `rate` per second; returns (submit seconds, delivered seconds).
pub(super) async fn load(
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
pub(super) async fn submit_all(
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

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
