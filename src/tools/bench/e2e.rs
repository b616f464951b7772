//! `homeward bench e2e`: accepted/s, delivered/s and submit-to-receipt
//! latency between two gateway processes over real mutual TLS.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::procs::*;

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
    /// Both gateways without signing keys: the cost of signatures is the
    /// difference to a signed run.
    pub unsigned: bool,
}

/// The disk's synchronous commit rate where the bench keeps its databases:
/// 4 KiB appended and `fdatasync`ed, over and over, for `seconds`. A commit
/// on SQLite (`synchronous=FULL`) costs one such sync, so this bounds what
/// one submitter waiting for each `202` can reach.
pub(super) fn fsync_rate(dir: &Path, seconds: f64) -> std::io::Result<f64> {
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

pub(super) fn median_of(values: &[f64]) -> f64 {
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
        let mut disk_sender = Vec::new();
        let mut disk_receiver = Vec::new();
        let mut idle_rss = Vec::new();
        let mut peak_rss = Vec::new();
        for _ in 0..opts.runs {
            let dir = tempfile::tempdir()?;
            let mut dbs = Databases::new(opts.database_url.as_deref());
            let (th, kh) = start_pair_signed(dir.path(), &mut dbs, !opts.unsigned).await?;
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
            let disk_before = pids.map(disk_bytes_written);
            let since = max_seq(&th.db).await?;
            let (sub, del) = load(&th, &kh, opts.messages, w, None, offset).await?;
            offset += opts.messages;
            let cpu_after: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
            let switches_after: u64 = pids.iter().filter_map(|p| context_switches(*p)).sum();
            let disk_after = pids.map(disk_bytes_written);
            let kb_per_message = |i: usize| match (disk_before[i], disk_after[i]) {
                (Some(b), Some(a)) => a.saturating_sub(b) as f64 / 1024.0 / opts.messages as f64,
                _ => f64::NAN,
            };
            disk_sender.push(kb_per_message(0));
            disk_receiver.push(kb_per_message(1));
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
            "signed": !opts.unsigned,
            "messages": opts.messages,
            "accepted_per_s": median_of(&accepted),
            "delivered_per_s": median_of(&delivered),
            "latency_ms_p50": median_of(&p50),
            "latency_ms_p99": median_of(&p99),
            "cpu_seconds_per_1000_messages_both_gateways": median_of(&cpu),
            "context_switches_per_message_both_gateways": median_of(&switches),
            "disk_kb_written_per_message_sender": median_of(&disk_sender),
            "disk_kb_written_per_message_receiver": median_of(&disk_receiver),
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
        let (th, kh) = start_pair_signed(dir.path(), &mut dbs, !opts.unsigned).await?;
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
