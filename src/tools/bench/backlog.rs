//! `homeward bench backlog`: a long outage, then the peer returns.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::procs::*;

/// What `homeward bench backlog` measures.
#[derive(Debug, Clone)]
pub struct BacklogOptions {
    pub messages: usize,
    pub database_url: Option<String>,
    /// How long the peer stays down once the backlog is queued: long
    /// enough, and the messages' backoff reaches its cap.
    pub outage: Duration,
    /// The sender's retry policy (`[delivery]`).
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

fn rss_mb(pid: u32, field: &str) -> f64 {
    proc_status(pid, field).map_or(f64::NAN, |kb| kb as f64 / 1024.0)
}

/// A long outage: `messages` queue at TH for a peer that does not answer,
/// then the peer comes back. Reports TH's memory with the backlog, the time
/// from the peer's start to its last receipt (how soon a healed partition
/// drains), and the drain rate in each tenth of the backlog (steady means
/// no slowdown as the backlog shrinks or grows).
pub async fn backlog(opts: &BacklogOptions) -> anyhow::Result<Value> {
    let n = opts.messages.max(10);
    let dir = tempfile::tempdir()?;
    let mut dbs = Databases::new(opts.database_url.as_deref());
    let delivery = crate::config::DeliverySettings {
        initial_backoff_ms: opts.initial_backoff_ms,
        max_backoff_ms: opts.max_backoff_ms.max(opts.initial_backoff_ms),
        ..bench_delivery()
    };
    let (th, kh) = prepare_pair(dir.path(), &mut dbs, delivery).await?;
    let th = launch(th).await?;
    let pid = th.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_mb(pid, "VmRSS:");
    let start = Instant::now();
    submit_all(&th, n, 64, None, 0).await?;
    let queue_seconds = start.elapsed().as_secs_f64();
    let queued_rss = rss_mb(pid, "VmRSS:");
    let queued_peak = rss_mb(pid, "VmHWM:");
    tokio::time::sleep(opts.outage).await;
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);

    let starting = Instant::now();
    let kh = launch(kh).await?;
    let peer_start_seconds = starting.elapsed().as_secs_f64();
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_seconds = back.elapsed().as_secs_f64();
    let after_start_seconds = starting.elapsed().as_secs_f64();
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
        "outage_s": opts.outage.as_secs_f64(),
        "initial_backoff_ms": opts.initial_backoff_ms,
        "max_backoff_ms": opts.max_backoff_ms,
        "queued_per_s": n as f64 / queue_seconds,
        "sender_idle_rss_mb": idle_rss,
        "sender_rss_mb_with_backlog": queued_rss,
        "sender_peak_rss_mb_while_queueing": queued_peak,
        "sender_peak_rss_mb_overall": peak_rss,
        "peer_start_s": peer_start_seconds,
        "peer_start_to_last_receipt_s": after_start_seconds,
        "drained_per_s": n as f64 / drain_seconds,
        "drain_per_s_by_tenth": marks,
        "ratio_last_tenth_to_first": last_rate / first,
        "sender_cpu_seconds_per_1000_drained": cpu / n as f64 * 1000.0,
    }))
}
