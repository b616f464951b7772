//! Crash safety with real processes: `homeward serve` children are killed
//! with SIGKILL at seeded random moments while 500 messages stream through,
//! and restarted. Every message that got a 202 must reach the receiver
//! exactly once, and per case in submission order. The same while batches
//! are committed (`POST /v1/messages/batch`): a batch that got no answer
//! is whole or absent, never half-written. Also: SIGTERM drains and exits
//! cleanly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const MESSAGES: usize = 500;
const CASES: usize = 20;

async fn submit_until_accepted(api: &Api, message: &Value) {
    loop {
        match api.submit(message).await {
            Ok(r) if r.status == 202 => return,
            Ok(r) if r.status == 503 => {}
            Ok(r) => panic!("unexpected refusal {}: {}", r.status, r.body),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn crash_run(victim: &str, seed: u64) {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh_addrs = (free_addr(), free_addr());
    let th_addrs = (free_addr(), free_addr());
    let kh_settings = settings(&pki, "KH", data.path(), kh_addrs, &[("TH", th_addrs.0)]);
    let th_settings = settings(&pki, "TH", data.path(), th_addrs, &[("KH", kh_addrs.0)]);
    let kh_api = api(&pki, "KH", kh_addrs.1);
    let th_api = api(&pki, "TH", th_addrs.1);
    let mut kh = Process::new(data.path(), &kh_settings, kh_api.clone());
    let mut th = Process::new(data.path(), &th_settings, th_api.clone());
    kh.start().await;
    th.start().await;

    // The first message of each case opens it; the rest update it.
    let messages: Vec<Value> = (0..MESSAGES)
        .map(|i| {
            let case = case_ref("TH", "KH", i % CASES);
            if i < CASES {
                referral("TH", "KH", &case, i)
            } else {
                update("TH", "KH", &case, i)
            }
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let (mut target, other) = if victim == "TH" { (th, kh) } else { (kh, th) };
    let killer = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..250))).await;
                target.kill().await;
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
                target.start().await;
            }
            (target, kills)
        })
    };
    for m in &messages {
        submit_until_accepted(&th_api, m).await;
    }
    done.store(true, Ordering::SeqCst);
    let (mut target, kills) = killer.await.unwrap();
    assert!(
        kills >= 3,
        "the {victim} gateway was killed only {kills} time(s)"
    );

    eventually(
        "every accepted message in KH's inbox",
        Duration::from_secs(90),
        || {
            let kh_api = kh_api.clone();
            async move { read_inbox(&kh_api).await.len() >= MESSAGES }
        },
    )
    .await;
    let inbox = read_inbox(&kh_api).await;
    assert_exactly_once_in_order(&inbox, &messages.iter().collect::<Vec<_>>());

    // The sender's view agrees: every message delivered, with a receipt.
    for m in messages.iter().step_by(25) {
        let id = m["message_id"].as_str().unwrap();
        eventually(
            "sender to record the receipt",
            Duration::from_secs(30),
            || {
                let th_api = th_api.clone();
                async move {
                    th_api
                        .message(id)
                        .await
                        .map(|r| r.body["state"] == "delivered")
                        .unwrap_or(false)
                }
            },
        )
        .await;
    }
    eprintln!(
        "{victim} killed {kills} times; {MESSAGES} messages delivered exactly once, in order per case"
    );
    target.kill().await;
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_killed_repeatedly_loses_and_duplicates_nothing() {
    crash_run("TH", 0x5eed_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_repeatedly_loses_and_duplicates_nothing() {
    crash_run("KH", 0x5eed_0002).await;
}

/// Batches of this many, until this many are answered.
const BATCH: usize = 100;
const ANSWERED: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_while_committing_batches_keeps_each_batch_whole() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh_addrs = (free_addr(), free_addr());
    let th_addrs = (free_addr(), free_addr());
    let kh_settings = settings(&pki, "KH", data.path(), kh_addrs, &[("TH", th_addrs.0)]);
    let th_settings = settings(&pki, "TH", data.path(), th_addrs, &[("KH", kh_addrs.0)]);
    let kh_api = api(&pki, "KH", kh_addrs.1);
    let th_api = api(&pki, "TH", th_addrs.1);
    let mut kh = Process::new(data.path(), &kh_settings, kh_api.clone());
    let mut th = Process::new(data.path(), &th_settings, th_api.clone());
    kh.start().await;
    th.start().await;

    // Each batch opens 25 cases and updates each three times: a later item
    // of a batch builds on an earlier one.
    let batch_of = |b: usize| -> Vec<Value> {
        (0..BATCH)
            .map(|i| {
                let case = case_ref("TH", "KH", 5000 + b * 25 + i % 25);
                if i < 25 {
                    referral("TH", "KH", &case, i)
                } else {
                    update("TH", "KH", &case, i)
                }
            })
            .collect()
    };
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0003);
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
                th.kill().await;
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
                th.start().await;
            }
            (th, kills)
        })
    };
    let (mut accepted, mut unanswered): (Vec<Value>, Vec<Vec<Value>>) = (Vec::new(), Vec::new());
    let mut b = 0;
    while accepted.len() < ANSWERED * BATCH {
        let batch = batch_of(b);
        b += 1;
        match th_api.submit_batch(&batch, None).await {
            Ok(r) if r.status == 200 && r.body["results"].is_array() => {
                let results = r.body["results"].as_array().unwrap();
                assert_eq!(results.len(), batch.len());
                for item in results {
                    assert_eq!(item["status"], 202, "{item}");
                }
                accepted.extend(batch);
            }
            // The store closing under the kill: nothing of it accepted.
            Ok(r) if r.status == 503 => unanswered.push(batch),
            // Killed while its `200` was on the way: the answer never came
            // whole, so the client cannot know what it says; the batch is
            // checked below like any unanswered one.
            Ok(r) if r.status == 200 => unanswered.push(batch),
            Ok(r) => panic!("unexpected answer {}: {}", r.status, r.body),
            // Cut off mid-request, maybe mid-commit, or no gateway to take it.
            Err(_) => {
                unanswered.push(batch);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    let (mut th, kills) = killer.await.unwrap();
    assert!(kills >= 3, "the sender was killed only {kills} time(s)");

    // A batch without an answer is in the outbox whole, or not at all.
    let mut committed: Vec<&Value> = accepted.iter().collect();
    let mut whole = 0;
    for batch in &unanswered {
        let mut stored = Vec::new();
        for m in batch.iter() {
            let id = m["message_id"].as_str().unwrap();
            let status = loop {
                match th_api.message(id).await {
                    Ok(r) => break r.status,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            assert!(status == 200 || status == 404, "{id}: {status}");
            stored.push(status == 200);
        }
        assert!(
            stored.iter().all(|s| *s) || stored.iter().all(|s| !*s),
            "an unanswered batch half-written: {} of {} items stored",
            stored.iter().filter(|s| **s).count(),
            stored.len()
        );
        if stored[0] {
            whole += 1;
            committed.extend(batch.iter());
        }
    }
    eventually(
        "every committed message in KH's inbox",
        Duration::from_secs(120),
        || {
            let kh_api = kh_api.clone();
            let n = committed.len();
            async move { read_inbox(&kh_api).await.len() >= n }
        },
    )
    .await;
    assert_exactly_once_in_order(&read_inbox(&kh_api).await, &committed);
    eprintln!(
        "sender killed {kills} times; {} batches answered, {} unanswered ({whole} of them committed whole, the rest not at all); {} messages delivered exactly once",
        accepted.len() / BATCH,
        unanswered.len(),
        committed.len()
    );
    th.kill().await;
    kh.kill().await;
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    // TH restarts on its addresses; KH is nowhere.
    let th_addrs = (free_addr(), free_addr());
    let kh = Unreachable::new();
    let th_settings = settings(&pki, "TH", data.path(), th_addrs, &[("KH", kh.addr)]);
    let th_api = api(&pki, "TH", th_addrs.1);
    let mut th = Process::new(data.path(), &th_settings, th_api.clone());
    th.start().await;
    let msg = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    let mut child = th.child.take().unwrap();
    let pid = child.id().expect("running") as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within the drain timeout")
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    // The queued message survived the restart.
    th.start().await;
    let id = msg["message_id"].as_str().unwrap();
    let s = th_api.message(id).await.unwrap();
    assert_eq!(s.status, 200);
    assert!(
        matches!(s.body["state"].as_str(), Some("queued" | "delivering")),
        "{}",
        s.body
    );
    th.kill().await;
}
