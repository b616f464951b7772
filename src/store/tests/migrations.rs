//! Databases made by older schemas, migrated by this release: nothing in
//! them is lost, and the chains and keys they hold go on.

use super::sqlite_url;
use crate::store::Store;
use crate::store::seal::Sealer;
use crate::store::tx::query;

/// A SQLite database at `url` with the migrations before `before` (a
/// file name prefix such as `0006`) applied: the schema of an older release.
async fn old_schema(url: &str, before: &str) -> sqlx::SqlitePool {
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/store/migrations/sqlite"
    ))
    .unwrap()
    {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() < before {
            std::fs::copy(&path, old.path().join(name)).unwrap();
        }
    }
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

/// A database whose outbox still holds the bodies (before migration 6)
/// keeps every body: after the upgrade each is claimed with its own text.
#[tokio::test]
async fn upgrading_moves_outbox_bodies_without_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let sealer = Sealer::ephemeral();
    {
        let pool = old_schema(&url, "0006").await;
        for i in 1..=3 {
            sqlx::query(
                "INSERT INTO outbox (message_id, case_ref, peer, type, body, body_sha256, submit_sha256, state, next_attempt_at, submitted_at, deadline_at) \
                 VALUES ($1, $2, 'KH', 'referral.notify', $3, 'h', 's', 'queued', 0, 0, 9)",
            )
            .bind(format!("m{i}"))
            .bind(format!("TH-KH-2026-00000{i}"))
            .bind(sealer.seal(&format!("m{i}"), &format!("{{\"n\":{i}}}")))
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = Store::open(&url, sealer).await.expect("migrates");
    let claimed = store.claim_due(1, 10).await.unwrap();
    let bodies: Vec<(String, String)> = claimed
        .into_iter()
        .map(|c| (c.message_id, c.body))
        .collect();
    assert_eq!(
        bodies,
        (1..=3)
            .map(|i| (format!("m{i}"), format!("{{\"n\":{i}}}")))
            .collect::<Vec<_>>()
    );
}

/// An audit log written before officers were recorded (migration 8), with
/// the hashes that release wrote (computed independently and fixed here),
/// still verifies after the upgrade, and goes on verifying once records
/// with officer ids are chained to it.
#[tokio::test]
async fn an_audit_log_from_before_officers_still_verifies() {
    use crate::store::audit::{AuditEntry, AuditFilter, Verified};
    const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const H1: &str = "f4e679cf30e3b1bac865e9f1fe6828b1956a6a31ddd46b7f9f703c33a240053e";
    const H2: &str = "ed90093ebe79f7b0daab03ad255a6f8be759aeea26732396010df4529e6151eb";
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    {
        let pool = old_schema(&url, "0008").await;
        let case = "TH-KH-2026-000001";
        let old_rows = [
            (
                1,
                1000,
                "TH-case-system",
                "caseworker",
                "case.read",
                None,
                "ok",
                GENESIS,
                H1,
            ),
            (
                2,
                1001,
                "TH-admin",
                "admin",
                "message.retry",
                Some("01936f3e-5b7a-7c2d-9a61-000000000001"),
                "refused:409",
                H1,
                H2,
            ),
        ];
        for (seq, at, actor, role, action, message_id, result, prev, hash) in old_rows {
            sqlx::query(
                "INSERT INTO audit (seq, at, actor, role, action, case_ref, message_id, result, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(seq)
            .bind(at)
            .bind(actor)
            .bind(role)
            .bind(action)
            .bind(case)
            .bind(message_id)
            .bind(result)
            .bind(prev)
            .bind(hash)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = Store::open(&url, Sealer::ephemeral())
        .await
        .expect("migrates");
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verified::Intact { rows: 2 }
    );
    let entry = |officer: Option<&str>| AuditEntry {
        at: 2000,
        actor: "TH-case-system".into(),
        role: "caseworker".into(),
        action: "case.read".into(),
        case_ref: Some("TH-KH-2026-000001".into()),
        message_id: None,
        result: "ok".into(),
        officer: officer.map(str::to_string),
    };
    store
        .audit(&[entry(Some("officer-0042")), entry(None)])
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verified::Intact { rows: 4 }
    );
    let rows = store.audit_rows(None, 0, 10).await.unwrap();
    let officers: Vec<Option<&str>> = rows.iter().map(|r| r.officer.as_deref()).collect();
    assert_eq!(officers, [None, None, Some("officer-0042"), None]);
    let by_officer = AuditFilter {
        case_ref: None,
        actor: Some("officer-0042"),
    };
    let found = store.audit_rows_where(&by_officer, 0, 10).await.unwrap();
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
    store.close().await;
}

/// A database made by the schema before the lean rebuild (migration 12),
/// with a message of each kind, a timer, an event and an audit chain,
/// comes through the rebuild whole: every row is found through the store
/// with its keys, bodies, receipts and chain intact, and the keys go on
/// from the largest rather than starting again.
#[tokio::test]
async fn the_lean_rebuild_keeps_every_message_receipt_timer_and_audit_record() {
    use crate::store::audit::{AuditEntry, Verified, chain_hash};
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let sealer = Sealer::ephemeral();
    let case = "TH-KH-2026-000001";
    {
        let pool = old_schema(&url, "0012").await;
        let run = |sql: &'static str| sqlx::query(sql);
        // Keys with gaps, as a database that lived has them.
        for (seq, id, state, receipt) in [
            (3, "m-out-1", "delivered", Some("{\"receipt\":1}")),
            (7, "m-out-2", "queued", None),
        ] {
            run("INSERT INTO outbox (seq, message_id, case_ref, peer, type, body_sha256, submit_sha256, state, \
                 next_attempt_at, submitted_at, deadline_at, receipt, signature, receipt_signature) \
                 VALUES ($1, $2, $3, 'KH', 'referral.notify', 'h', 's', $4, 0, 0, 9, $5, 'sig', 'rsig')")
            .bind(seq)
            .bind(id)
            .bind(case)
            .bind(state)
            .bind(receipt)
            .execute(&pool)
            .await
            .unwrap();
            run("INSERT INTO outbox_body (seq, body) VALUES ($1, $2)")
                .bind(seq)
                .bind(sealer.seal(id, &format!("{{\"id\":\"{id}\"}}")))
                .execute(&pool)
                .await
                .unwrap();
        }
        run("INSERT INTO inbox (seq, message_id, case_ref, sender, type, body, body_sha256, received_at, receipt, signature) \
             VALUES (5, 'm-in-1', $1, 'KH', 'referral.ack', $2, 'h', 10, '{\"receipt\":2}', 'sig')")
        .bind(case)
        .bind(sealer.seal("m-in-1", "{\"id\":\"m-in-1\"}"))
        .execute(&pool)
        .await
        .unwrap();
        for (seq, id, dir) in [
            (2, "m-out-1", "out"),
            (4, "m-in-1", "in"),
            (9, "m-out-2", "out"),
        ] {
            run("INSERT INTO case_log (seq, case_ref, message_id, direction) VALUES ($1, $2, $3, $4)")
                .bind(seq)
                .bind(case)
                .bind(id)
                .bind(dir)
                .execute(&pool)
                .await
                .unwrap();
        }
        run("INSERT INTO timers (id, case_ref, message_id, message_type, expected_type, side, peer, agreement, \
             started_at, due_at, state, next_event_at) \
             VALUES (11, $1, 'm-out-1', 'referral.notify', 'referral.ack', 'awaiting_answer', 'KH', 'KH-TH', 1, 99, 'open', 50)")
        .bind(case)
        .execute(&pool)
        .await
        .unwrap();
        run("INSERT INTO case_events (id, case_ref, message_id, kind, at, detail, alert_state, alert_next_at) \
             VALUES (13, $1, 'm-out-1', 'dead', 5, '{}', 'pending', 5)")
        .bind(case)
        .execute(&pool)
        .await
        .unwrap();
        let mut prev = "0".repeat(64);
        for seq in 1..=3i64 {
            let e = AuditEntry {
                at: seq,
                actor: "TH-case-system".into(),
                role: "caseworker".into(),
                action: "message.submit".into(),
                case_ref: Some(case.into()),
                message_id: None,
                result: "ok".into(),
                officer: (seq == 2).then(|| "officer-0042".to_string()),
            };
            let hash = chain_hash(&prev, seq, &e);
            run("INSERT INTO audit (seq, at, actor, role, action, case_ref, result, officer, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(seq)
            .bind(e.at)
            .bind(e.actor.clone())
            .bind(e.role.clone())
            .bind(e.action.clone())
            .bind(case)
            .bind(e.result.clone())
            .bind(e.officer.clone())
            .bind(prev.clone())
            .bind(hash.clone())
            .execute(&pool)
            .await
            .unwrap();
            prev = hash;
        }
        pool.close().await;
    }
    let store = Store::open(&url, sealer).await.expect("migrates");
    let sent = store.outbound("m-out-1").await.unwrap().expect("kept");
    assert_eq!(
        (sent.seq, sent.state),
        (3, crate::store::OutState::Delivered)
    );
    assert_eq!(sent.receipt.as_deref(), Some("{\"receipt\":1}"));
    assert_eq!(sent.receipt_signature.as_deref(), Some("rsig"));
    let received = store.inbound("m-in-1").await.unwrap().expect("kept");
    assert_eq!(
        (received.seq, received.receipt.as_str()),
        (5, "{\"receipt\":2}")
    );
    assert_eq!(received.body, "{\"id\":\"m-in-1\"}");
    let exchange = store.case_exchange(case).await.unwrap();
    let order: Vec<(i64, &str)> = exchange
        .iter()
        .map(|m| (m.seq, m.message_id.as_str()))
        .collect();
    assert_eq!(order, [(2, "m-out-1"), (4, "m-in-1"), (9, "m-out-2")]);
    assert!(
        exchange.iter().all(|m| m.body.is_some()),
        "every body opens"
    );
    let timers = store.case_timers(case).await.unwrap();
    assert_eq!(timers.iter().map(|t| t.id).collect::<Vec<_>>(), [11]);
    assert_eq!(store.due_timers(60, 10).await.unwrap().len(), 1);
    let events = store.case_events(case).await.unwrap();
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [13]);
    assert_eq!(store.pending_alerts(10, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verified::Intact { rows: 3 }
    );
    let by_officer = crate::store::audit::AuditFilter {
        case_ref: None,
        actor: Some("officer-0042"),
    };
    let found = store.audit_rows_where(&by_officer, 0, 10).await.unwrap();
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    // The queued one is still due, with its body.
    let claimed = store.claim_due(1, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].seq, claimed[0].body.as_str()),
        (7, "{\"id\":\"m-out-2\"}")
    );
    // New keys follow the largest: nothing is numbered twice.
    store
        .audit(&[AuditEntry {
            at: 4,
            actor: "TH-case-system".into(),
            role: "caseworker".into(),
            action: "case.read".into(),
            case_ref: None,
            message_id: None,
            result: "ok".into(),
            officer: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit().await.unwrap(),
        Verified::Intact { rows: 4 }
    );
    let next_log = query(
        "INSERT INTO case_log (case_ref, message_id, direction) VALUES ($1, 'm-new', 'out') RETURNING seq",
    )
    .bind(case)
    .fetch_one(&store.write)
    .await
    .unwrap()
    .get::<i64>("seq")
    .unwrap();
    assert_eq!(next_log, 10);
    let sequences = query("SELECT COUNT(*) AS n FROM sqlite_sequence")
        .fetch_one(&store.read)
        .await
        .unwrap()
        .get::<i64>("n")
        .unwrap();
    assert_eq!(sequences, 0, "no table keeps an AUTOINCREMENT counter");
    store.close().await;
}
