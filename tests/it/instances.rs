//! Several instances of one gateway on one PostgreSQL database: two KH
//! `homeward serve` processes share a fresh database and deliver 5,000
//! messages to TH; one is killed with SIGKILL half way. TH must receive
//! every accepted message exactly once, and per case in submission order.
//! Skipped, with a line saying so, when `HOMEWARD_TEST_PG_URL` is not set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const CASES: usize = 250;
const PER_CASE: usize = 20;
const MESSAGES: usize = CASES * PER_CASE;
const SUBMITTERS: usize = 16;

/// KH refers a Thai national identified in Cambodia: case `KH-TH-...`.
fn messages() -> Vec<Vec<Value>> {
    (0..CASES)
        .map(|c| {
            let case = case_ref("KH", "TH", c);
            (0..PER_CASE)
                .map(|i| {
                    if i == 0 {
                        let mut m = referral("KH", "TH", &case, c);
                        m["payload"]["person"]["nationality_claimed"] = json!("TH");
                        m["payload"]["placement"]["country"] = json!("KH");
                        m
                    } else {
                        update("KH", "TH", &case, c * PER_CASE + i)
                    }
                })
                .collect()
        })
        .collect()
}

/// Submits `m` to a live instance until one accepts it. A submission cut
/// off by the kill is simply sent again (to the survivor): the same bytes
/// under the same id are a replay, never a second message.
async fn submit(apis: &[Api; 2], killed: &AtomicBool, rng: &mut impl Rng, m: &Value) {
    loop {
        let pick = if killed.load(Ordering::SeqCst) {
            1
        } else {
            rng.random_range(0..2)
        };
        match apis[pick].submit(m).await {
            Ok(r) if r.status == 202 || r.status == 200 => return,
            Ok(r) if r.status == 503 || r.status == 429 => {}
            Ok(r) => panic!("unexpected refusal {}: {}", r.status, r.body),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_deliver_exactly_once_through_a_sigkill() {
    let Some(url) = pg::fresh_database() else {
        pg::skip("two_instances_on_one_database_deliver_exactly_once_through_a_sigkill");
        return;
    };
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let th_addrs = (free_addr(), free_addr());
    let kh_addrs = [(free_addr(), free_addr()), (free_addr(), free_addr())];
    let th_settings = settings(&pki, "TH", data.path(), th_addrs, &[("KH", kh_addrs[0].0)]);
    let th_api = api(&pki, "TH", th_addrs.1);
    let mut th = Process::new(data.path(), &th_settings, th_api.clone());
    th.start().await;
    let mut kh = Vec::new();
    for (i, addrs) in kh_addrs.iter().enumerate() {
        let mut s = settings(&pki, "KH", data.path(), *addrs, &[("TH", th_addrs.0)]);
        s.database.url = url.clone();
        let mut p = Process::named(
            data.path(),
            &format!("kh{}", i + 1),
            &s,
            api(&pki, "KH", addrs.1),
        );
        p.start().await;
        kh.push(p);
    }
    let apis = [kh[0].api.clone(), kh[1].api.clone()];

    let cases = Arc::new(messages());
    let accepted = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut submitters = tokio::task::JoinSet::new();
    for w in 0..SUBMITTERS {
        let (cases, accepted, killed, apis) = (
            cases.clone(),
            accepted.clone(),
            killed.clone(),
            apis.clone(),
        );
        submitters.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x1157_0000 + w as u64);
            // Round by round, so cases interleave; in order within a case.
            for round in 0..PER_CASE {
                for case in cases.iter().skip(w).step_by(SUBMITTERS) {
                    submit(&apis, &killed, &mut rng, &case[round]).await;
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    // Half way, instance 1 dies without warning, holding whatever it had
    // claimed; instance 2 must take those over when their leases run out.
    while accepted.load(Ordering::SeqCst) < MESSAGES / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kh[0].kill().await;
    killed.store(true, Ordering::SeqCst);
    let at_kill = accepted.load(Ordering::SeqCst);
    while let Some(r) = submitters.join_next().await {
        r.expect("submitter");
    }

    eventually(
        "every accepted message in TH's inbox",
        Duration::from_secs(240),
        || {
            let th_api = th_api.clone();
            async move { read_inbox(&th_api).await.len() >= MESSAGES }
        },
    )
    .await;
    // Late duplicates would show up after the count is reached: wait a
    // lease's length, then look.
    tokio::time::sleep(fast_delivery().lease()).await;
    let inbox = read_inbox(&th_api).await;
    let sent: Vec<&Value> = cases.iter().flatten().collect();
    assert_exactly_once_in_order(&inbox, &sent);

    // The shared outbox agrees: every message delivered, once.
    let counts: Vec<(String, i64)> = {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .fetch_all(&mut db)
            .await
            .unwrap()
    };
    assert_eq!(counts, vec![("delivered".to_string(), MESSAGES as i64)]);
    eprintln!(
        "instance 1 killed after {at_kill} of {MESSAGES} accepted; all delivered exactly once, in order per case"
    );
    kh[1].kill().await;
    th.kill().await;
}
