//! The store's contract, run against every backend: a SQLite file always,
//! and a fresh PostgreSQL database when `HOMEWARD_TEST_PG_URL` is set (each
//! test its own database, dropped when the run ends). The multi-instance
//! cases (two stores on one database, as two gateway instances would be)
//! need PostgreSQL and are skipped, with a line saying so, without it.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{acknowledge, case_ref, pg, referral, update};
use homeward::store::audit::{AuditEntry, Verified};
use homeward::store::seal::Sealer;
use homeward::store::timers::{NewTimer, Side};
use homeward::store::{
    Backend, Enqueued, NewInbound, NewOutbound, OutState, Outcome, Received, Store,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// One sealing key per test, shared by the instances of one gateway.
fn key() -> Sealer {
    Sealer::ephemeral()
}

/// A store on `backend`, with the directory that holds its file (SQLite).
/// `None` (after saying so) when the backend is not available here.
async fn open(backend: Backend, test: &str, sealer: Sealer) -> Option<(Store, String, TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("store.db").display()),
        Backend::Postgres => match pg::fresh_database() {
            Some(url) => url,
            None => {
                pg::skip(&format!("{test} (on PostgreSQL)"));
                return None;
            }
        },
    };
    let store = Store::open(&url, sealer).await.expect("store opens");
    assert_eq!(store.backend(), backend);
    Some((store, url, dir))
}

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn outbound(msg: &Value, now: i64) -> NewOutbound {
    let body = msg.to_string();
    let sha = hex::encode(Sha256::digest(body.as_bytes()));
    NewOutbound {
        message_id: msg["message_id"].as_str().unwrap().to_string(),
        case_ref: msg["case_ref"].as_str().unwrap().to_string(),
        peer: msg["to"].as_str().unwrap().to_string(),
        message_type: msg["type"].as_str().unwrap().to_string(),
        in_reply_to: msg["in_reply_to"].as_str().map(String::from),
        body_sha256: sha.clone(),
        submit_sha256: sha,
        case_message: homeward::domain::lifecycle::CaseMessage::from_stored(&body)
            .expect("envelope"),
        body,
        submitted_at: now,
        deadline_at: now + 3_600_000,
        search: Vec::new(),
        facts: Vec::new(),
    }
}

fn inbound(msg: &Value, now: i64) -> NewInbound {
    let body = msg.to_string();
    NewInbound {
        message_id: msg["message_id"].as_str().unwrap().to_string(),
        case_ref: msg["case_ref"].as_str().unwrap().to_string(),
        sender: msg["from"].as_str().unwrap().to_string(),
        message_type: msg["type"].as_str().unwrap().to_string(),
        in_reply_to: msg["in_reply_to"].as_str().map(String::from),
        body_sha256: hex::encode(Sha256::digest(body.as_bytes())),
        case_message: homeward::domain::lifecycle::CaseMessage::from_stored(&body)
            .expect("envelope"),
        body,
        received_at: now,
        receipt: format!("{{\"receipt_for\":\"{}\"}}", msg["message_id"]),
        signature: Some(format!("envelope-signature-{}", msg["message_id"])),
        receipt_signature: Some(format!("receipt-signature-{}", msg["message_id"])),
        timer: None,
        search: Vec::new(),
        facts: Vec::new(),
    }
}

fn delivered(at: i64) -> Outcome {
    Outcome::Delivered {
        receipt: "{}".into(),
        signature: Some("envelope-signature".into()),
        receipt_signature: Some("receipt-signature".into()),
        at,
        received_at: at,
        timer: None,
    }
}

async fn enqueue_new(store: &Store, msg: &Value, now: i64) {
    match store.enqueue(&outbound(msg, now)).await.expect("enqueue") {
        Enqueued::New(_) => {}
        other => panic!("expected a new row, got {other:?}"),
    }
}

#[tokio::test]
async fn outbox_is_idempotent_and_keeps_case_order() {
    for backend in BACKENDS {
        let Some((store, _, _dir)) =
            open(backend, "outbox_is_idempotent_and_keeps_case_order", key()).await
        else {
            continue;
        };
        let case = case_ref("TH", "KH", 1);
        let first = referral("TH", "KH", &case, 1);
        let second = update("TH", "KH", &case, 2);
        enqueue_new(&store, &first, 1_000).await;
        enqueue_new(&store, &second, 1_001).await;

        // The same document again is a replay; another under its id a conflict.
        assert!(matches!(
            store.enqueue(&outbound(&first, 2_000)).await.unwrap(),
            Enqueued::Replay(_)
        ));
        let mut other = first.clone();
        other["payload"]["risk_level"] = "high".into();
        assert!(matches!(
            store.enqueue(&outbound(&other, 2_000)).await.unwrap(),
            Enqueued::Conflict(_)
        ));
        // An acknowledgement from the wrong side makes no sense: refused.
        let ack = acknowledge("TH", "KH", &case, first["message_id"].as_str().unwrap());
        assert!(
            matches!(
                store.enqueue(&outbound(&ack, 2_000)).await.unwrap(),
                Enqueued::Refused(_)
            ),
            "{backend:?}"
        );

        // Only the head of the case is due; the update waits for it.
        let claimed = store.claim_due(5_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "{backend:?}");
        assert_eq!(claimed[0].message_id, first["message_id"].as_str().unwrap());
        assert_eq!(claimed[0].attempts, 1);
        assert_eq!(
            serde_json::from_str::<Value>(&claimed[0].body).unwrap(),
            first,
            "the body comes back unsealed, byte for byte"
        );
        store
            .record(&[(claimed[0].seq, delivered(5_001))])
            .await
            .unwrap();
        let claimed = store.claim_due(5_002, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "{backend:?}");
        assert_eq!(
            claimed[0].message_id,
            second["message_id"].as_str().unwrap()
        );
        // A retry puts it back with its error; a rejection is final.
        store
            .record(&[(
                claimed[0].seq,
                Outcome::Retry {
                    error: "peer down".into(),
                    next_attempt_at: 9_000,
                },
            )])
            .await
            .unwrap();
        assert!(store.claim_due(8_999, 10).await.unwrap().is_empty());
        assert_eq!(store.next_due().await.unwrap(), Some(9_000), "{backend:?}");
        let again = store.claim_due(9_000, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 2);
        store
            .record(&[(
                again[0].seq,
                Outcome::Rejected {
                    reason: "no".into(),
                },
            )])
            .await
            .unwrap();
        let row = store
            .outbound(second["message_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state.as_str(), "rejected");
        // A late outcome from a stale attempt does not undo a final state.
        store
            .record(&[(
                again[0].seq,
                Outcome::Retry {
                    error: "late".into(),
                    next_attempt_at: 1,
                },
            )])
            .await
            .unwrap();
        let row = store
            .outbound(second["message_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state.as_str(), "rejected", "{backend:?}");
        assert_eq!(store.next_due().await.unwrap(), None);
        store.close().await;
    }
}

#[tokio::test]
async fn inbox_is_idempotent_and_checks_the_lifecycle() {
    for backend in BACKENDS {
        let Some((store, _, _dir)) = open(
            backend,
            "inbox_is_idempotent_and_checks_the_lifecycle",
            key(),
        )
        .await
        else {
            continue;
        };
        let case = case_ref("TH", "KH", 7);
        let first = referral("TH", "KH", &case, 7);
        let batch = [
            inbound(&first, 10),
            inbound(&update("TH", "KH", &case, 8), 11),
        ];
        let got = store.receive_many(&batch).await.unwrap();
        assert!(
            got.iter()
                .all(|r| matches!(r, Received::Stored { fresh: true, .. })),
            "{backend:?}: {got:?}"
        );
        // A resend gets the stored receipt; other bytes under the id conflict.
        match store.receive(&inbound(&first, 20)).await.unwrap() {
            Received::Stored {
                receipt,
                receipt_signature,
                fresh,
            } => {
                assert!(!fresh);
                assert_eq!(receipt, batch[0].receipt);
                // The resend gets the first receipt's signature, as stored.
                assert_eq!(receipt_signature, batch[0].receipt_signature);
                let row = store
                    .inbound(first["message_id"].as_str().unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(row.signature, batch[0].signature);
            }
            other => panic!("{other:?}"),
        }
        let mut changed = first.clone();
        changed["payload"]["risk_level"] = "high".into();
        assert!(matches!(
            store.receive(&inbound(&changed, 21)).await.unwrap(),
            Received::Conflict
        ));
        let stray = acknowledge(
            "KH",
            "TH",
            &case_ref("TH", "KH", 99),
            first["message_id"].as_str().unwrap(),
        );
        assert!(matches!(
            store.receive(&inbound(&stray, 22)).await.unwrap(),
            Received::Refused(_)
        ));
        let feed = store.inbox_after(0, 10).await.unwrap();
        assert_eq!(feed.len(), 2, "{backend:?}");
        assert_eq!(serde_json::from_str::<Value>(&feed[0].body).unwrap(), first);
        assert_eq!(
            store
                .case_state(&case)
                .await
                .unwrap()
                .map(|s| s.as_str().to_string()),
            Some("referred".to_string())
        );
        store.close().await;
    }
}

#[tokio::test]
async fn audit_chain_holds() {
    for backend in BACKENDS {
        let Some((store, _, _dir)) = open(backend, "audit_chain_holds", key()).await else {
            continue;
        };
        for i in 0..5 {
            store
                .audit(&[audit_entry(i)])
                .await
                .expect("audit appended");
        }
        assert_eq!(
            store.verify_audit().await.unwrap(),
            Verified::Intact { rows: 5 },
            "{backend:?}"
        );
        store.close().await;
    }
}

fn audit_entry(i: i64) -> AuditEntry {
    AuditEntry {
        at: 1_000 + i,
        actor: format!("synthetic-actor-{i}"),
        role: "caseworker".into(),
        action: "case.read".into(),
        case_ref: Some(case_ref("TH", "KH", 1)),
        message_id: None,
        result: "ok".into(),
        // Every other record names an officer: one chain holds both kinds.
        officer: (i % 2 == 1).then(|| format!("officer-{i}")),
    }
}

/// A sealing key kept in a file, so several stores (two instances, or one
/// gateway before and after a restart) read each other's bodies.
struct SharedKey {
    _dir: TempDir,
    path: std::path::PathBuf,
}

impl SharedKey {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::fs::write(&path, homeward::store::seal::new_key_hex()).unwrap();
        Self { _dir: dir, path }
    }

    fn sealer(&self) -> Sealer {
        Sealer::from_settings(&homeward::store::seal::EncryptionSettings {
            active_key: "k1".into(),
            keys: vec![homeward::store::seal::KeySettings {
                id: "k1".into(),
                file: Some(self.path.clone()),
                env: None,
            }],
            search_key: None,
        })
        .expect("sealer")
    }
}

/// Two stores on one PostgreSQL database, as two instances of one gateway.
async fn two_instances(test: &str, lease: Duration) -> Option<(Store, Store)> {
    let key = SharedKey::new();
    let (a, url, _) = open(Backend::Postgres, test, key.sealer()).await?;
    let b = Store::open(&url, key.sealer())
        .await
        .expect("second instance");
    Some((a.with_lease(lease), b.with_lease(lease)))
}

#[tokio::test]
async fn instances_never_claim_the_same_message_and_take_over_expired_leases() {
    let test = "instances_never_claim_the_same_message_and_take_over_expired_leases";
    let Some((a, b)) = two_instances(test, Duration::from_millis(10_000)).await else {
        return;
    };
    let mut ids = BTreeSet::new();
    for i in 0..200 {
        let msg = referral("TH", "KH", &case_ref("TH", "KH", i), i);
        ids.insert(msg["message_id"].as_str().unwrap().to_string());
        enqueue_new(if i % 2 == 0 { &a } else { &b }, &msg, 1_000).await;
    }
    // Both claim at once, many times over: no message twice.
    let mut claimed = Vec::new();
    for round in 0..10 {
        let now = 2_000 + round;
        let (x, y) = tokio::join!(a.claim_due(now, 16), b.claim_due(now, 16));
        claimed.extend(x.unwrap());
        claimed.extend(y.unwrap());
    }
    let unique: BTreeSet<_> = claimed.iter().map(|c| c.message_id.clone()).collect();
    assert_eq!(unique.len(), claimed.len(), "a message was claimed twice");
    assert_eq!(
        claimed.len(),
        200,
        "ten rounds of two claims of 16 take all 200"
    );
    assert_eq!(unique, ids);
    // Instance A "dies" holding its claims: nothing is due until the lease
    // runs out, then B takes every one of them over.
    assert!(b.claim_due(2_000 + 9_999, 500).await.unwrap().is_empty());
    let taken = b.claim_due(2_000 + 10_010, 500).await.unwrap();
    assert_eq!(taken.len(), 200);
    assert!(taken.iter().all(|c| c.attempts == 2));
    let results: Vec<_> = taken.iter().map(|c| (c.seq, delivered(20_000))).collect();
    b.record(&results).await.unwrap();
    // The first claimer's late receipts change nothing and fail nothing.
    let stale: Vec<_> = claimed.iter().map(|c| (c.seq, delivered(21_000))).collect();
    a.record(&stale).await.unwrap();
    assert_eq!(a.next_due().await.unwrap(), None);
    let counts = a.outbox_counts().await.unwrap();
    assert_eq!(
        counts,
        vec![("KH".to_string(), "delivered".to_string(), 200)]
    );
}

#[tokio::test]
async fn a_timer_fires_once_with_two_instances() {
    let Some((a, b)) = two_instances(
        "a_timer_fires_once_with_two_instances",
        Duration::from_secs(30),
    )
    .await
    else {
        return;
    };
    let case = case_ref("TH", "KH", 3);
    a.insert_timers(&[NewTimer {
        case_ref: case.clone(),
        message_id: "0193a000-0000-7000-8000-000000000001".into(),
        message_type: "referral.notify".into(),
        expected_type: "referral.acknowledge".into(),
        side: Side::AnswerDue,
        peer: "TH".into(),
        agreement: "synthetic".into(),
        started_at: 0,
        due_at: 1_000,
        first_event_at: Some(500),
    }])
    .await
    .unwrap();
    let reminders = [0.5, 0.8];
    // Each instance reads the due timer and decides the same firing; the
    // writes race, and exactly one lands.
    let firings = |due: Vec<homeward::store::timers::TimerRow>| -> Vec<_> {
        due.into_iter()
            .filter_map(|t| homeward::app::timers::decide(&t, 600, &reminders).map(|f| (t, f)))
            .collect()
    };
    let firings_a = firings(a.due_timers(600, 10).await.unwrap());
    let firings_b = firings(b.due_timers(600, 10).await.unwrap());
    assert_eq!(firings_a.len(), 1);
    let (x, y) = tokio::join!(a.apply_firings(&firings_a), b.apply_firings(&firings_b));
    assert_eq!(
        x.unwrap() + y.unwrap(),
        1,
        "the reminder fired exactly once"
    );
    let events = a.case_events(&case).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
}

#[tokio::test]
async fn concurrent_audit_appends_keep_one_chain() {
    let Some((a, b)) = two_instances(
        "concurrent_audit_appends_keep_one_chain",
        Duration::from_secs(30),
    )
    .await
    else {
        return;
    };
    let (x, y) = tokio::join!(
        async {
            for i in 0..50 {
                a.audit(&[audit_entry(i)]).await.unwrap();
            }
        },
        async {
            for i in 0..50 {
                b.audit(&[audit_entry(100 + i)]).await.unwrap();
            }
        }
    );
    let _ = (x, y);
    assert_eq!(
        a.verify_audit().await.unwrap(),
        Verified::Intact { rows: 100 }
    );
}

#[tokio::test]
async fn concurrent_submissions_to_one_case_keep_its_lifecycle() {
    let Some((a, b)) = two_instances(
        "concurrent_submissions_to_one_case_keep_its_lifecycle",
        Duration::from_secs(30),
    )
    .await
    else {
        return;
    };
    // Two instances each try to open the same case at once: the lifecycle
    // allows one referral, so exactly one is accepted.
    for i in 0..20 {
        let case = case_ref("TH", "KH", 500 + i);
        let m1 = referral("TH", "KH", &case, 1);
        let m2 = referral("TH", "KH", &case, 2);
        let (o1, o2) = (outbound(&m1, 1), outbound(&m2, 1));
        let (x, y) = tokio::join!(a.enqueue(&o1), b.enqueue(&o2));
        let accepted = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|e| matches!(e, Enqueued::New(_)))
            .count();
        assert_eq!(accepted, 1, "case {case}: one referral opens it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_commit_together_and_each_gets_its_own_answer() {
    for backend in BACKENDS {
        let test = "concurrent_submissions_commit_together_and_each_gets_its_own_answer";
        let Some((store, _, _dir)) = open(backend, test, key()).await else {
            continue;
        };
        // 100 new cases, each referral submitted three times at once: one
        // commit each, the other two are replays, even inside one group.
        let messages: Vec<Value> = (0..100)
            .map(|i| referral("TH", "KH", &case_ref("TH", "KH", 1000 + i), i))
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for m in messages.iter().chain(&messages).chain(&messages) {
            let (store, o) = (store.clone(), outbound(m, 1_000));
            set.spawn(async move { store.enqueue(&o).await.expect("enqueue") });
        }
        let (mut new, mut replay) = (BTreeSet::new(), 0);
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Enqueued::New(row) => assert!(new.insert(row.message_id), "{backend:?}: twice new"),
                Enqueued::Replay(_) => replay += 1,
                other => panic!("{backend:?}: {other:?}"),
            }
        }
        assert_eq!(new.len(), 100, "{backend:?}");
        assert_eq!(replay, 200, "{backend:?}");
        let counts = store.outbox_counts().await.unwrap();
        assert_eq!(counts, vec![("KH".to_string(), "queued".to_string(), 100)]);
        store.close().await;
    }
}

/// Six messages from TH to KH, to be committed together: a referral opening
/// case A; an update of A, valid only after that referral; the referral
/// again (a replay); other content under its id (a conflict); an
/// acknowledgement from the sender, which only the receiver may send (a
/// refusal); a referral opening case B.
fn mixed_group(serial: usize) -> [Value; 6] {
    let (case_a, case_b) = (
        case_ref("TH", "KH", serial),
        case_ref("TH", "KH", serial + 1),
    );
    let referral_a = referral("TH", "KH", &case_a, serial);
    let mut changed_a = referral_a.clone();
    changed_a["payload"]["risk_level"] = "high".into();
    let ack = acknowledge(
        "TH",
        "KH",
        &case_a,
        referral_a["message_id"].as_str().unwrap(),
    );
    [
        referral_a.clone(),
        update("TH", "KH", &case_a, serial + 2),
        referral_a,
        changed_a,
        ack,
        referral("TH", "KH", &case_b, serial + 1),
    ]
}

/// Each submission of a group committed together is judged as if alone and
/// in order: a later one sees the earlier ones of its group.
#[tokio::test(flavor = "current_thread")]
async fn a_group_of_submissions_is_judged_one_by_one_in_order() {
    for backend in BACKENDS {
        let test = "a_group_of_submissions_is_judged_one_by_one_in_order";
        let Some((store, _, _dir)) = open(backend, test, key()).await else {
            continue;
        };
        let group = mixed_group(41);
        // On one thread, every task queues its submission before the
        // committer runs: one group.
        let tasks: Vec<_> = group
            .iter()
            .map(|m| {
                let (store, o) = (store.clone(), outbound(m, 1_000));
                tokio::spawn(async move { store.enqueue(&o).await.expect("enqueue") })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        let kinds: Vec<&str> = got
            .iter()
            .map(|e| match e {
                Enqueued::New(_) => "new",
                Enqueued::Replay(_) => "replay",
                Enqueued::Conflict(_) => "conflict",
                Enqueued::Refused(_) => "refused",
            })
            .collect();
        assert_eq!(
            kinds,
            ["new", "new", "replay", "conflict", "refused", "new"],
            "{backend:?}"
        );
        let (Enqueued::New(a), Enqueued::New(update), Enqueued::New(b)) =
            (&got[0], &got[1], &got[5])
        else {
            unreachable!()
        };
        assert!(
            a.seq < update.seq && update.seq < b.seq,
            "{backend:?}: seq in submission order"
        );
        // The heads of both cases are due; the update waits for its referral.
        let due: BTreeSet<String> = store
            .claim_due(2_000, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.message_id)
            .collect();
        assert_eq!(
            due,
            BTreeSet::from([a.message_id.clone(), b.message_id.clone()]),
            "{backend:?}"
        );
        store.close().await;
    }
}

/// The same for a submitted batch, which commits whole with the audit
/// records of its new messages (and only theirs), or not at all.
#[tokio::test]
async fn an_enqueued_batch_is_judged_one_by_one_and_audits_its_new_messages() {
    for backend in BACKENDS {
        let test = "an_enqueued_batch_is_judged_one_by_one_and_audits_its_new_messages";
        let Some((store, _, _dir)) = open(backend, test, key()).await else {
            continue;
        };
        let items: Vec<_> = mixed_group(51)
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut audit = audit_entry(i as i64);
                audit.action = "message.submit".into();
                (outbound(m, 1_000), Some(audit))
            })
            .collect();
        let kinds = |got: &[Enqueued]| -> Vec<&'static str> {
            got.iter()
                .map(|e| match e {
                    Enqueued::New(_) => "new",
                    Enqueued::Replay(_) => "replay",
                    Enqueued::Conflict(_) => "conflict",
                    Enqueued::Refused(_) => "refused",
                })
                .collect()
        };
        let items: Vec<_> = items.iter().map(|(m, a)| (m, a.as_ref())).collect();
        let got = store.enqueue_batch(&items).await.expect("batch");
        assert_eq!(
            kinds(&got),
            ["new", "new", "replay", "conflict", "refused", "new"],
            "{backend:?}"
        );
        let (Enqueued::New(a), Enqueued::New(update), Enqueued::New(b)) =
            (&got[0], &got[1], &got[5])
        else {
            unreachable!()
        };
        assert!(a.seq < update.seq && update.seq < b.seq, "{backend:?}");
        assert_eq!(
            store.verify_audit().await.unwrap(),
            Verified::Intact { rows: 3 },
            "{backend:?}: one record per new message"
        );
        // Again: nothing new, nothing audited.
        let again = store.enqueue_batch(&items).await.expect("batch again");
        assert_eq!(
            kinds(&again),
            [
                "replay", "replay", "replay", "conflict", "refused", "replay"
            ],
            "{backend:?}"
        );
        assert_eq!(
            store.verify_audit().await.unwrap(),
            Verified::Intact { rows: 3 },
            "{backend:?}"
        );
        assert!(store.enqueue_batch(&[]).await.unwrap().is_empty());
        store.close().await;
    }
}

/// The same for a batch from a peer.
#[tokio::test]
async fn a_received_batch_is_judged_one_by_one_in_order() {
    for backend in BACKENDS {
        let test = "a_received_batch_is_judged_one_by_one_in_order";
        let Some((store, _, _dir)) = open(backend, test, key()).await else {
            continue;
        };
        let batch: Vec<NewInbound> = mixed_group(51).iter().map(|m| inbound(m, 10)).collect();
        let got = store.receive_many(&batch).await.unwrap();
        let kinds: Vec<String> = got
            .iter()
            .map(|r| match r {
                Received::Stored { fresh, .. } => format!("stored fresh={fresh}"),
                Received::Conflict => "conflict".into(),
                Received::Refused(_) => "refused".into(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "stored fresh=true",
                "stored fresh=true",
                "stored fresh=false",
                "conflict",
                "refused",
                "stored fresh=true"
            ],
            "{backend:?}"
        );
        let feed: Vec<String> = store
            .inbox_after(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.message_id)
            .collect();
        let expected: Vec<String> = [&batch[0], &batch[1], &batch[5]]
            .iter()
            .map(|m| m.message_id.clone())
            .collect();
        assert_eq!(feed, expected, "{backend:?}: committed in batch order");
        store.close().await;
    }
}

/// The delivery worker keeps several claims in flight: a claimed message is
/// not claimed again until its outcome is recorded or its lease runs out,
/// and on SQLite (one gateway per file) a restart releases the claims the
/// last run left.
#[tokio::test]
async fn claims_stay_claimed_until_recorded_and_a_restart_releases_them() {
    for backend in BACKENDS {
        let test = "claims_stay_claimed_until_recorded_and_a_restart_releases_them";
        let lease = Duration::from_millis(10_000);
        let key = SharedKey::new();
        let Some((store, url, _dir)) = open(backend, test, key.sealer()).await else {
            continue;
        };
        let store = store.with_lease(lease);
        let mut ids = BTreeSet::new();
        for i in 0..3 {
            let msg = referral("TH", "KH", &case_ref("TH", "KH", 60 + i), i);
            ids.insert(msg["message_id"].as_str().unwrap().to_string());
            enqueue_new(&store, &msg, 1_000).await;
        }
        let first = store.claim_due(2_000, 2).await.unwrap();
        let second = store.claim_due(2_001, 10).await.unwrap();
        assert_eq!((first.len(), second.len()), (2, 1), "{backend:?}");
        let claimed: BTreeSet<String> = first
            .iter()
            .chain(&second)
            .map(|c| c.message_id.clone())
            .collect();
        assert_eq!(claimed, ids, "{backend:?}: each claimed once");
        assert!(store.claim_due(2_002, 10).await.unwrap().is_empty());
        assert_eq!(store.next_due().await.unwrap(), Some(12_000), "{backend:?}");
        store
            .record(&[(first[0].seq, delivered(2_003))])
            .await
            .unwrap();

        // The gateway stops without recording the other two, and starts again.
        store.close().await;
        let store = Store::open(&url, key.sealer())
            .await
            .expect("reopens")
            .with_lease(lease);
        let released = store.release_claims(3_000).await.unwrap();
        let again = store.claim_due(3_000, 10).await.unwrap();
        match backend {
            Backend::Sqlite => {
                assert_eq!(released, 2);
                assert_eq!(again.len(), 2);
                assert!(again.iter().all(|c| c.attempts == 2));
            }
            // Other instances may hold the claims: only the lease frees them.
            Backend::Postgres => {
                assert_eq!(released, 0);
                assert!(again.is_empty());
                assert_eq!(store.claim_due(12_001, 10).await.unwrap().len(), 2);
            }
        }
        store.close().await;
    }
}

/// One batch's outcomes are recorded together, whatever their mix: each
/// message gets its own state, error and next attempt.
#[tokio::test]
async fn a_batch_of_mixed_outcomes_is_recorded_message_by_message() {
    for backend in BACKENDS {
        let test = "a_batch_of_mixed_outcomes_is_recorded_message_by_message";
        let Some((store, _url, _dir)) = open(backend, test, key()).await else {
            continue;
        };
        let mut ids = Vec::new();
        for i in 0..5 {
            let msg = referral("TH", "KH", &case_ref("TH", "KH", 80 + i), i);
            ids.push(msg["message_id"].as_str().unwrap().to_string());
            enqueue_new(&store, &msg, 1_000).await;
        }
        let claimed = store.claim_due(2_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 5, "{backend:?}");
        let retry = |n: i64| Outcome::Retry {
            error: format!("{{\"kind\":\"connect\",\"try\":{n}}}"),
            next_attempt_at: 5_000 + n,
        };
        let outcomes = [
            delivered(2_100),
            retry(1),
            Outcome::Rejected {
                reason: "{\"code\":\"schema_violation\"}".into(),
            },
            retry(2),
            Outcome::Dead {
                error: "{\"kind\":\"deadline\"}".into(),
                at: 2_100,
            },
        ];
        let results: Vec<(i64, Outcome)> = claimed.iter().map(|c| c.seq).zip(outcomes).collect();
        store.record(&results).await.unwrap();

        let mut seen = Vec::new();
        for id in &ids {
            let row = store.outbound(id).await.unwrap().expect("stored");
            seen.push((row.state, row.next_attempt_at, row.last_error));
        }
        assert_eq!(
            seen,
            vec![
                (OutState::Delivered, 2_000 + 30_000, None),
                (
                    OutState::Delivering,
                    5_001,
                    Some("{\"kind\":\"connect\",\"try\":1}".into())
                ),
                (
                    OutState::Rejected,
                    32_000,
                    Some("{\"code\":\"schema_violation\"}".into())
                ),
                (
                    OutState::Delivering,
                    5_002,
                    Some("{\"kind\":\"connect\",\"try\":2}".into())
                ),
                (
                    OutState::Dead,
                    32_000,
                    Some("{\"kind\":\"deadline\"}".into())
                ),
            ],
            "{backend:?}"
        );
        // The retried two come due again at their own times, and only they.
        let again: Vec<String> = store
            .claim_due(5_002, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.message_id)
            .collect();
        assert_eq!(again, vec![ids[1].clone(), ids[3].clone()], "{backend:?}");
        store.close().await;
    }
}

/// While a peer is down its messages wait for a probe (one at a time),
/// unless past their deadline; when it is back, every message waiting for
/// it is due at once, and nothing final, no attempt count and no other
/// peer's message moves.
#[tokio::test]
async fn a_peer_that_is_down_is_probed_and_its_waiting_messages_come_due_together() {
    for backend in BACKENDS {
        let test = "a_peer_that_is_down_is_probed_and_its_waiting_messages_come_due_together";
        let Some((store, _url, _dir)) = open(backend, test, key()).await else {
            continue;
        };
        let store = store.with_lease(Duration::from_millis(1_000));
        let mut ids = Vec::new();
        for i in 0..5 {
            let msg = referral("TH", "KH", &case_ref("TH", "KH", 90 + i), i);
            ids.push(msg["message_id"].as_str().unwrap().to_string());
            enqueue_new(&store, &msg, 1_000).await;
        }
        let to_vn = referral("TH", "VN", &case_ref("TH", "VN", 90), 1);
        enqueue_new(&store, &to_vn, 1_000).await;
        let claimed = store.claim_due(2_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 6, "{backend:?}");
        let retry = |next_attempt_at: i64| Outcome::Retry {
            error: "{\"kind\":\"transport\"}".into(),
            next_attempt_at,
        };
        let outcomes: Vec<(i64, Outcome)> = claimed
            .iter()
            .map(|c| {
                let i = ids.iter().position(|id| *id == c.message_id);
                let o = match i {
                    Some(0) => delivered(2_100),
                    Some(1) => Outcome::Rejected {
                        reason: "{\"code\":\"schema_violation\"}".into(),
                    },
                    Some(2) => Outcome::Dead {
                        error: "{\"kind\":\"deadline\"}".into(),
                        at: 2_100,
                    },
                    Some(_) => retry(50_000),
                    None => retry(60_000),
                };
                (c.seq, o)
            })
            .collect();
        store.record(&outcomes).await.unwrap();

        // A new message for KH is due, but KH is down: it waits for the probe.
        let fresh = referral("TH", "KH", &case_ref("TH", "KH", 99), 9);
        ids.push(fresh["message_id"].as_str().unwrap().to_string());
        enqueue_new(&store, &fresh, 2_500).await;
        let down = vec!["KH".to_string()];
        assert!(
            store
                .claim_due_except(3_000, 10, &down)
                .await
                .unwrap()
                .is_empty(),
            "{backend:?}"
        );
        assert_eq!(store.next_due().await.unwrap(), Some(2_500));
        assert_eq!(store.next_due_except(&down).await.unwrap(), Some(60_000));
        // The probe: the one due soonest.
        let probe = store
            .claim_probe(3_000, "KH")
            .await
            .unwrap()
            .expect("a probe");
        assert_eq!(probe.message_id, ids[5], "{backend:?}");
        assert_eq!(probe.attempts, 1);
        store.record(&[(probe.seq, retry(70_000))]).await.unwrap();
        // With none due, the probe is the oldest waiting.
        let probe = store
            .claim_probe(3_001, "KH")
            .await
            .unwrap()
            .expect("a probe");
        assert!(ids[3..5].contains(&probe.message_id), "{backend:?}");
        store.record(&[(probe.seq, retry(55_000))]).await.unwrap();
        assert!(store.claim_probe(3_002, "MY").await.unwrap().is_none());

        let before: Vec<_> = {
            let mut rows = Vec::new();
            for id in &ids {
                rows.push(store.outbound(id).await.unwrap().unwrap());
            }
            rows
        };
        // KH is back: its three waiting messages are due now.
        assert_eq!(store.due_now_for_peer("KH", 4_000).await.unwrap(), 3);
        for (id, was) in ids.iter().zip(&before) {
            let row = store.outbound(id).await.unwrap().unwrap();
            assert_eq!(
                (row.state, row.attempts),
                (was.state, was.attempts),
                "{backend:?}"
            );
            let expected = match was.state {
                OutState::Delivering => 4_000,
                _ => was.next_attempt_at,
            };
            assert_eq!(row.next_attempt_at, expected, "{backend:?} {id}");
        }
        let vn = store
            .outbound(to_vn["message_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(vn.next_attempt_at, 60_000, "{backend:?}: VN's own backoff");
        assert_eq!(store.due_now_for_peer("KH", 4_000).await.unwrap(), 0);
        let again: BTreeSet<String> = store
            .claim_due(4_000, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.message_id)
            .collect();
        assert_eq!(again, ids[3..].iter().cloned().collect(), "{backend:?}");

        // Past the deadline, a down peer's message is claimed anyway (its
        // last attempt makes it dead); one with time left is not.
        let down = vec!["KH".to_string(), "VN".to_string()];
        let late: BTreeSet<String> = store
            .claim_due_except(1_000 + 3_600_000, 10, &down)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.message_id)
            .collect();
        let expected: BTreeSet<String> = [
            ids[3].clone(),
            ids[4].clone(),
            to_vn["message_id"].as_str().unwrap().to_string(),
        ]
        .into();
        assert_eq!(late, expected, "{backend:?}");
        store.close().await;
    }
}
