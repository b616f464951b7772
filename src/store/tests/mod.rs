//! Store internals the public API cannot show: the writer's durability
//! setting around a claim, write transactions cut short, the indexes'
//! query plans and rows that do not read. The migrations of older
//! databases are in `migrations`.

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

mod migrations;
