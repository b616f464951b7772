//! `homeward bench screening`: deportation screening at Poipet (about
//! 50,000 people a year) or years of paper cases arriving at once, through
//! `POST /v1/messages/batch`: how long from the first batch submitted to
//! the peer's last receipt.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::procs::*;

/// What `homeward bench screening` measures.
#[derive(Debug, Clone)]
pub struct ScreeningOptions {
    pub messages: usize,
    /// Messages per batch (the route takes at most 500).
    pub batch: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
    pub database_url: Option<String>,
}

/// Submits `messages` in batches to TH, which delivers them to KH; reports
/// the time to the last `200` and to KH's last receipt.
pub async fn screening(opts: &ScreeningOptions) -> anyhow::Result<Value> {
    let n = opts.messages.max(1);
    let batch = opts.batch.clamp(1, 500);
    let dir = tempfile::tempdir()?;
    let mut dbs = Databases::new(opts.database_url.as_deref());
    let (th, kh) = start_pair_signed(dir.path(), &mut dbs, true).await?;
    let cpu_before =
        cpu_seconds(th.child.id()).unwrap_or(0.0) + cpu_seconds(kh.child.id()).unwrap_or(0.0);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (api, next) = (th.api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (client, base, token) = api.raw();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let messages: Vec<Value> =
                    (first..(first + batch).min(n)).map(bench_message).collect();
                let r = client
                    .post(format!("{base}/v1/messages/batch"))
                    .bearer_auth(token)
                    .json(&json!({ "messages": messages }))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "batch refused: {}", r.status());
                let body: Value = r.json().await?;
                let refused = body["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i["status"] != 202)
                    .count();
                anyhow::ensure!(
                    refused == 0,
                    "{refused} messages of a batch refused: {body}"
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let submitted = start.elapsed().as_secs_f64();
    while received(&kh).await < n as u64 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(3600),
            "delivery did not finish in an hour"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(th.child.id()).unwrap_or(0.0) + cpu_seconds(kh.child.id()).unwrap_or(0.0)
        - cpu_before;
    let peak =
        |p: &Proc| proc_status(p.child.id(), "VmHWM:").map_or(f64::NAN, |kb| kb as f64 / 1024.0);
    let (th_peak, kh_peak) = (peak(&th), peak(&kh));
    drop((th, kh));
    dbs.drop_all().await?;
    Ok(json!({
        "benchmark": "screening: messages through POST /v1/messages/batch, submit to the peer's last receipt",
        "database": if opts.database_url.is_some() { "postgres" } else { "sqlite" },
        "messages": n,
        "batch": batch,
        "batches_in_flight": opts.concurrency.max(1),
        "submit_s": submitted,
        "submit_to_last_receipt_s": delivered,
        "accepted_per_s": n as f64 / submitted,
        "delivered_per_s": n as f64 / delivered,
        "cpu_seconds_per_1000_messages_both_gateways": cpu / n as f64 * 1000.0,
        "peak_rss_mb_sender": th_peak,
        "peak_rss_mb_receiver": kh_peak,
    }))
}
