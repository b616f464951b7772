//! Store internals the public API cannot show: the writer connection's
//! durability setting around a claim, write transactions cut short, and
//! the migrations that moved outbox bodies into their own table and that
//! added the officer to the audit log.

use super::seal::Sealer;
use super::tx::{Arg, Script, WriteTx, query};
use super::{Outcome, Store};

/// The durability a write transaction that answers a caller runs with,
/// read inside one (after whatever the writer ran before).
async fn synchronous(store: &Store) -> i64 {
    let mut tx = WriteTx::begin(&store.write, store.backend).await.unwrap();
    let rows = tx
        .run(Script::of("PRAGMA synchronous".to_string(), []))
        .await
        .expect("reads the setting");
    tx.commit(Script::new()).await.unwrap();
    rows[0].first().unwrap()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("g.db").display())
}

/// A new SQLite store in a directory of its own (kept while the guard lives).
async fn fresh_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_url(&dir), Sealer::ephemeral())
        .await
        .unwrap();
    (store, dir)
}

/// 2 is FULL: every commit of the writer waits for the disk.
const FULL: i64 = 2;

/// One row of `purged_cases`, a table nothing else writes to, for the
/// transaction tests.
const PURGED_INSERT: &str =
    "INSERT INTO purged_cases (case_ref, state, purged_at) VALUES (?, 'closed', ?)";

fn insert_purged(case_ref: &'static str, at: i64) -> Script<'static> {
    Script::of(
        PURGED_INSERT.to_string(),
        [Arg::Str(case_ref), Arg::Int(at)],
    )
}

/// Rows of `purged_cases`.
async fn purged_rows(store: &Store) -> i64 {
    query("SELECT COUNT(*) AS n FROM purged_cases")
        .fetch_one(&store.read)
        .await
        .unwrap()
        .get("n")
        .unwrap()
}

/// A claim and a repeatable outcome commit with `synchronous` relaxed; the
/// writer is back to FULL afterwards, so the next submission's `202` still
/// waits for the disk.
#[tokio::test]
async fn claims_and_outcomes_leave_the_writer_committing_durably() {
    let (store, _dir) = fresh_store().await;
    assert_eq!(synchronous(&store).await, FULL);
    query(
        "INSERT INTO outbox (message_id, case_ref, peer, type, body_sha256, submit_sha256, state, next_attempt_at, submitted_at, deadline_at) \
         VALUES ('m1', 'TH-KH-2026-000001', 'KH', 'referral.notify', 'h', 's', 'queued', 0, 0, 9)",
    )
    .execute(&store.write)
    .await
    .unwrap();
    query("INSERT INTO outbox_body (seq, body) VALUES (1, $1)")
        .bind(store.sealer.seal("m1", "{}"))
        .execute(&store.write)
        .await
        .unwrap();
    let claimed = store.claim_due(1, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(synchronous(&store).await, FULL);
    assert!(store.claim_due(2, 10).await.unwrap().is_empty());
    assert_eq!(synchronous(&store).await, FULL);
    let retry = Outcome::Retry {
        error: "{}".into(),
        next_attempt_at: 3,
    };
    store.record(&[(claimed[0].seq, retry)]).await.unwrap();
    assert_eq!(synchronous(&store).await, FULL);
    let delivered = Outcome::Delivered {
        signature: None,
        receipt_signature: None,
        receipt: "{}".into(),
        at: 4,
        received_at: 4,
        timer: None,
    };
    store.record(&[(claimed[0].seq, delivered)]).await.unwrap();
    assert_eq!(synchronous(&store).await, FULL);
    let row = store.outbound("m1").await.unwrap().expect("stored");
    assert_eq!(row.state, super::OutState::Delivered);
}

/// A relaxed transaction dropped before its commit (an error, a
/// cancellation) takes its connection with it: what it wrote is rolled
/// back, the writer is free, and the next connection commits with FULL.
#[tokio::test]
async fn a_write_transaction_dropped_before_its_commit_leaves_nothing_behind() {
    let (store, _dir) = fresh_store().await;
    let mut tx = WriteTx::begin_relaxed(&store.write, store.backend)
        .await
        .unwrap();
    tx.run(insert_purged("TH-KH-2026-000001", 1)).await.unwrap();
    drop(tx);
    assert_eq!(synchronous(&store).await, FULL);
    let rows = purged_rows(&store).await;
    assert_eq!(rows, 0, "the uncommitted insert is rolled back");
    let tx = WriteTx::begin(&store.write, store.backend).await.unwrap();
    tx.commit(insert_purged("TH-KH-2026-000002", 2))
        .await
        .expect("the writer is free again");
}

/// A script's reads share one round trip yet come back apart: one set of
/// rows per statement, empty sets included, after a `BEGIN` (here two
/// statements, relaxed) that returns none of its own.
#[tokio::test]
async fn a_script_returns_the_rows_of_each_statement_apart() {
    let (store, _dir) = fresh_store().await;
    let mut tx = WriteTx::begin_relaxed(&store.write, store.backend)
        .await
        .unwrap();
    let mut script = Script::new();
    script.push("SELECT case_ref FROM purged_cases".to_string(), []);
    script.push(
        "INSERT INTO purged_cases (case_ref, state, purged_at) VALUES (?, 'closed', ?), (?, 'closed', ?) \
         RETURNING case_ref"
            .to_string(),
        [
            Arg::Str("TH-KH-2026-000001"),
            Arg::Int(1),
            Arg::Str("TH-KH-2026-000002"),
            Arg::Int(2),
        ],
    );
    script.push("SELECT COUNT(*) AS n FROM purged_cases".to_string(), []);
    script.push(
        "SELECT case_ref FROM purged_cases WHERE case_ref = ?".to_string(),
        [Arg::Str("TH-KH-2026-000003")],
    );
    let sets = tx.run_sets(script).await.unwrap();
    let sizes: Vec<usize> = sets.iter().map(Vec::len).collect();
    assert_eq!(sizes, [0, 2, 1, 0]);
    assert_eq!(
        sets[1][1].get::<String>("case_ref").unwrap(),
        "TH-KH-2026-000002"
    );
    assert_eq!(sets[2][0].get::<i64>("n").unwrap(), 2);
    tx.commit(Script::new()).await.unwrap();
    assert_eq!(synchronous(&store).await, FULL);
}

/// A transaction cancelled while its statement runs (a caller gone, a
/// shutdown) leaves the one writer connection usable: whatever the cut,
/// its rows are all there or none, the next use commits durably again, and
/// the next transaction goes through.
#[tokio::test]
async fn a_transaction_cancelled_mid_statement_leaves_the_writer_usable() {
    const ROWS: i64 = 200_000;
    let (store, _dir) = fresh_store().await;
    let (writer, backend) = (store.write.clone(), store.backend);
    let task = tokio::spawn(async move {
        let mut tx = WriteTx::begin_relaxed(&writer, backend).await.unwrap();
        tx.run(Script::of(
            format!(
                "INSERT INTO purged_cases (case_ref, state, purged_at) \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
                 SELECT 'TH-KH-2026-' || i, 'closed', i FROM n"
            ),
            [],
        ))
        .await
        .unwrap();
        tx.commit(Script::new()).await.unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    task.abort();
    let _ = task.await;
    assert_eq!(synchronous(&store).await, FULL);
    let rows = purged_rows(&store).await;
    assert!(
        rows == 0 || rows == ROWS,
        "{rows} rows: a transaction cut in two"
    );
    let tx = WriteTx::begin(&store.write, store.backend).await.unwrap();
    tx.commit(insert_purged("TH-KH-2026-XXXXXX", 1))
        .await
        .expect("the writer takes the next transaction");
}

/// A statement that fails halfway through a script fails the whole
/// transaction: the statements before it in the same string are undone.
#[tokio::test]
async fn a_failing_statement_undoes_the_script_before_it() {
    let (store, _dir) = fresh_store().await;
    let mut script = Script::new();
    script.push(
        PURGED_INSERT.to_string(),
        [Arg::Str("TH-KH-2026-000001"), Arg::Int(1)],
    );
    script.push(
        PURGED_INSERT.to_string(),
        [Arg::Str("TH-KH-2026-000001"), Arg::Int(2)],
    );
    let tx = WriteTx::begin(&store.write, store.backend).await.unwrap();
    assert!(
        tx.commit(script).await.is_err(),
        "the second insert repeats the key"
    );
    let rows = purged_rows(&store).await;
    assert_eq!(rows, 0);
    assert_eq!(synchronous(&store).await, FULL);
}

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
    use super::audit::{AuditEntry, AuditFilter, Verified};
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

/// Every index of the SQLite schema is there for a query the store runs,
/// and that query's plan uses it: an index no query uses costs a B-tree
/// write with every message for nothing. A new index needs a line here,
/// with the query it is for.
#[tokio::test]
async fn every_index_is_used_by_the_query_it_is_for() {
    use super::Backend::Sqlite;
    use super::audit::{AuditFilter, rows_sql};
    use super::timers::{TimerFilter, list_sql};
    let (store, _dir) = fresh_store().await;
    let claim = super::claims::claim_sql(Sqlite, &super::claims::due_filter(1), "$2", "$3");
    let by_case = AuditFilter {
        case_ref: Some("TH-KH-2026-000001"),
        actor: None,
    };
    let by_actor = AuditFilter {
        case_ref: None,
        actor: Some("officer-0042"),
    };
    let overdue = TimerFilter {
        state: Some("open".into()),
        due_before: Some(1),
        limit: 10,
        ..TimerFilter::default()
    };
    let uses: Vec<(&str, String)> = vec![
        ("outbox_pending", claim.clone()),
        ("outbox_case", claim),
        ("outbox_pending", super::claims::next_due_sql(Sqlite, 1)),
        ("inbox_case", super::cases::INBOX_OF_CASE.to_string()),
        ("case_log_case", super::cases::case_histories_sql(Sqlite, 2)),
        ("timers_next_event", super::timers::DUE_TIMERS.to_string()),
        ("timers_state_due", list_sql(&overdue)),
        ("timers_case", super::timers::CASE_TIMERS.to_string()),
        ("case_events_case", super::timers::CASE_EVENTS.to_string()),
        (
            "case_events_alerts",
            super::timers::PENDING_ALERTS.to_string(),
        ),
        ("audit_case", rows_sql(&by_case)),
        ("audit_actor", rows_sql(&by_actor)),
        ("audit_officer", rows_sql(&by_actor)),
        ("case_facts_at", super::facts::facts_of_period_sql()),
    ];
    for (index, sql) in &uses {
        // Parameters are NULL for the plan; `?` ones must be as many.
        let n = if sql.contains('$') {
            16
        } else {
            sql.matches('?').count()
        };
        let mut q = query(format!("EXPLAIN QUERY PLAN {sql}"));
        for _ in 0..n {
            q = q.bind(Arg::OptStr(None));
        }
        let plan: Vec<String> = q
            .fetch_all(&store.read)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String>("detail").unwrap())
            .collect();
        assert!(
            plan.iter().any(|d| d.contains(&format!("INDEX {index} "))
                || d.ends_with(&format!("INDEX {index}"))),
            "{index} is not used by {sql}: {plan:#?}"
        );
    }
    let indexes: std::collections::BTreeSet<String> = query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
    )
    .fetch_all(&store.read)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String>("name").unwrap())
    .collect();
    let named: std::collections::BTreeSet<String> =
        uses.iter().map(|(i, _)| i.to_string()).collect();
    assert_eq!(indexes, named, "every index, and only those, has its query");
}

/// A state this release does not know, written behind its back, is an
/// error naming the column and the value, not a message silently `dead`.
#[tokio::test]
async fn an_unknown_outbox_state_is_an_error_not_dead() {
    let (store, dir) = fresh_store().await;
    query(
        "INSERT INTO outbox (message_id, case_ref, peer, type, body_sha256, submit_sha256, state, next_attempt_at, submitted_at, deadline_at) \
         VALUES ('m1', 'TH-KH-2026-000001', 'KH', 'referral.notify', 'h', 's', 'queued', 0, 0, 9)",
    )
    .execute(&store.write)
    .await
    .unwrap();
    {
        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect(&sqlite_url(&dir))
            .await
            .unwrap();
        // The schema's CHECK would refuse it: a file from elsewhere.
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query("UPDATE outbox SET state = 'frozen'")
            .execute(&mut other)
            .await
            .unwrap();
        other.close().await.unwrap();
    }
    let e = store.outbound("m1").await.unwrap_err().to_string();
    assert!(
        e.contains("`state`") && e.contains("unknown outbox state `frozen`"),
        "{e}"
    );
    assert!(store.outbox_list(None, 10).await.is_err());
}

/// A database made by the schema before the lean rebuild (migration 12),
/// with a message of each kind, a timer, an event and an audit chain,
/// comes through the rebuild whole: every row is found through the store
/// with its keys, bodies, receipts and chain intact, and the keys go on
/// from the largest rather than starting again.
#[tokio::test]
async fn the_lean_rebuild_keeps_every_message_receipt_timer_and_audit_record() {
    use super::audit::{AuditEntry, Verified, chain_hash};
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
    assert_eq!((sent.seq, sent.state), (3, super::OutState::Delivered));
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
    let by_officer = super::audit::AuditFilter {
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
