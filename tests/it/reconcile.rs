//! Reconciliation between two real gateways: after an exchange both count
//! the same messages, cell by cell, under a verified signature; a copy
//! removed from one side behind its back is named by its message id, from
//! either side and through `homeward reconcile`; a peer that is down is a
//! clear error within seconds; bad requests to the peer route are refused
//! with the field named.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;
use homeward::app::reconcile::{self, Outcome, ReconcileError};
use homeward::gateway::RunningGateway;

async fn exchange(api: &Api, messages: Vec<Value>) -> Vec<String> {
    let r = api.submit_batch(&messages, None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ids = Vec::new();
    for m in &messages {
        let id = m["message_id"].as_str().unwrap().to_string();
        let status = api.wait_final(&id, Duration::from_secs(30)).await;
        assert_eq!(
            status.as_ref().map(|s| s["state"].clone()),
            Some(json!("delivered")),
            "{status:?}"
        );
        ids.push(id);
    }
    ids
}

async fn reconcile_from(g: &RunningGateway, peer: &str) -> Result<Outcome, ReconcileError> {
    let node = &g.node;
    reconcile::with_peer(
        &node.settings,
        &node.credentials(),
        &node.agreements(),
        &node.store,
        peer,
        ("2026", "2026"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_agree_and_a_copy_removed_behind_one_sides_back_is_named() {
    let pair = Pair::start().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let cases: Vec<String> = (1..=3).map(|i| case_ref("TH", "KH", 900 + i)).collect();
    let referrals = exchange(
        &th,
        cases
            .iter()
            .enumerate()
            .map(|(i, c)| referral("TH", "KH", c, i))
            .collect(),
    )
    .await;
    exchange(
        &kh,
        cases
            .iter()
            .zip(&referrals)
            .map(|(c, id)| acknowledge("KH", "TH", c, id))
            .collect(),
    )
    .await;

    for (from, peer) in [(&pair.kh, "TH"), (&pair.th, "KH")] {
        let o = reconcile_from(from, peer).await.unwrap();
        assert!(o.signed, "the peer's tally is signed and verified");
        assert!(o.comparison.agrees(), "{o:?}");
        let agreed: Vec<(String, String, u64)> = o
            .comparison
            .agreed
            .iter()
            .map(|a| (a.key.month.clone(), a.key.message_type.clone(), a.count))
            .collect();
        assert_eq!(
            agreed,
            vec![
                ("2026-11".into(), "referral.acknowledge".into(), 3),
                ("2026-11".into(), "referral.notify".into(), 3),
            ]
        );
    }

    // KH loses its copy of the second referral behind its back.
    let gone = &referrals[1];
    let pool = any_pool(&pair.kh.node.settings.database.url).await;
    for table in ["case_facts", "case_log", "inbox"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE message_id = $1"))
            .bind(gone)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let o = reconcile_from(&pair.kh, "TH").await.unwrap();
    assert!(!o.comparison.agrees());
    assert_eq!(o.comparison.agreed.len(), 1, "{o:?}");
    let d = &o.comparison.differing[0];
    assert_eq!(
        (d.key.message_type.as_str(), d.ours, d.theirs),
        ("referral.notify", 2, 3)
    );
    assert_eq!(
        (d.only_ours.len(), d.only_theirs.clone()),
        (0, vec![gone.clone()])
    );
    let o = reconcile_from(&pair.th, "KH").await.unwrap();
    let d = &o.comparison.differing[0];
    assert_eq!(d.only_ours, vec![gone.clone()], "TH holds what KH lost");

    // The same through the command, on KH's configuration file.
    let config = pair.data.path().join("kh-reconcile.toml");
    std::fs::write(&config, toml::to_string(&pair.kh.node.settings).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(["reconcile", "--peer", "TH", "--year", "2026", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("only at TH: {gone}")), "{text}");
    assert!(
        text.contains("signature verified") && text.contains("1 cells agree, 1 differ"),
        "{text}"
    );

    // A peer that is down: a clear error, in seconds, exit 2.
    let started = std::time::Instant::now();
    let e = reconcile_from(&pair.kh, "VN").await.unwrap_err();
    assert!(matches!(e, ReconcileError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("cannot reach VN at https://127.0.0.1:"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(["reconcile", "--peer", "VN", "--year", "2026", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach VN"));
    // Not a peer, and no corridor at all.
    let e = reconcile_from(&pair.th, "MY").await.unwrap_err();
    assert!(matches!(e, ReconcileError::NotAPeer(_)), "{e}");

    // The peer route names what is wrong with a request.
    let client = pair.kh_peer_client(Some(&pair.pki.identity(&pair.pki.paths("TH"))));
    let url = format!(
        "https://127.0.0.1:{}/peer/v1/reconcile",
        pair.kh.peer_addr.port()
    );
    for (body, keyword) in [
        (json!({"from": "2026-06-01", "to": "2026-05-01"}), "to"),
        (json!({"from": "2026-13", "to": "2026"}), "from"),
        (json!({"from": "2026", "to": "2026", "colour": 1}), "body"),
        (json!({"to": "2026"}), "body"),
        (json!([1, 2]), "body"),
        (
            json!({"from": "2026", "to": "2026",
                   "expand": vec![json!({"month": "2026-01", "type": "referral.notify"}); 1001]}),
            "expand",
        ),
    ] {
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "bad_reconcile", "{answer}");
        assert_eq!(
            answer["error"]["details"][0]["keyword"], keyword,
            "{answer}"
        );
    }
    let r = client
        .post(&url)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(&url)
        .body("{}")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    pair.stop().await;
}
