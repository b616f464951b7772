//! Test databases: a fresh PostgreSQL database per use when
//! `HOMEWARD_TEST_PG_URL` names a server (dropped when the test process
//! exits, several at a time), and a clear line on the terminal for every
//! test skipped without one.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;

pub const PG_URL_VAR: &str = "HOMEWARD_TEST_PG_URL";
/// `postgres` runs the gateway-level suites (exchange, lifecycle, timers,
/// ...) on PostgreSQL instead of SQLite files.
pub const STORE_VAR: &str = "HOMEWARD_TEST_STORE";

/// The server's URL, if PostgreSQL tests should run.
pub fn server_url() -> Option<String> {
    std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty())
}

/// Whether the gateway-level suites run on PostgreSQL.
pub fn suites_on_postgres() -> bool {
    match std::env::var(STORE_VAR).as_deref() {
        Ok("postgres") => {
            assert!(
                server_url().is_some(),
                "{STORE_VAR}=postgres needs {PG_URL_VAR}"
            );
            true
        }
        _ => false,
    }
}

/// Says on the terminal (past the test harness's capture, so a passing run
/// shows it) that `test` did not run, and why.
pub fn skip(test: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: needs PostgreSQL; set {PG_URL_VAR}=postgres://postgres@127.0.0.1:5432/test"
    );
}

static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Runs `f` on a runtime of its own on another thread, so it can be called
/// from sync code inside a test's runtime.
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("database helper thread")
}

/// A fresh, empty database on the test server; its URL. `None` without a
/// server. Every database made here is dropped when the process exits.
pub fn fresh_database() -> Option<String> {
    let server = server_url()?;
    let name = format!(
        "hw_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin = server.clone();
    let create = name.clone();
    let first = CREATED.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
    blocking(move || {
        Box::pin(async move {
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("{PG_URL_VAR}: cannot connect: {e}"));
            if first {
                sweep_abandoned(&mut conn).await;
            }
            sqlx::query(&format!("CREATE DATABASE {create}"))
                .execute(&mut conn)
                .await
                .expect("CREATE DATABASE");
            let _ = conn.close().await;
        })
    });
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    if created.is_empty() {
        // SAFETY: registering a plain `extern "C"` function with atexit.
        unsafe { libc::atexit(drop_created) };
    }
    created.push(name.clone());
    Some(with_database(&server, &name))
}

/// Drops the databases of earlier test processes that died before their
/// exit hook ran (killed, or out of time), named `hw_test_<pid>_<n>`.
async fn sweep_abandoned(conn: &mut sqlx::PgConnection) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname LIKE 'hw\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

extern "C" fn drop_created() {
    let names = std::mem::take(&mut *CREATED.lock().unwrap_or_else(|e| e.into_inner()));
    let Some(admin) = server_url() else { return };
    if names.is_empty() {
        return;
    }
    blocking(move || {
        Box::pin(async move {
            // One test binary drops every database of the run here. Each
            // DROP DATABASE waits for a checkpoint (about 2 s here, one
            // after the other); side by side, they share them.
            let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
            let mut drops = tokio::task::JoinSet::new();
            for name in names {
                let (admin, limit) = (admin.clone(), limit.clone());
                drops.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                        return;
                    };
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                });
            }
            while drops.join_next().await.is_some() {}
        })
    });
}
