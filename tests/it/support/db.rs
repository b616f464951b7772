//! A node's database as the tests see it: where it is (a SQLite file, or a
//! fresh PostgreSQL database with `HOMEWARD_TEST_STORE=postgres`), its
//! at-rest key, and plain access behind the gateway's back.

use std::path::{Path, PathBuf};

use super::pg;

/// The at-rest key of `cc` in `data`, made on first use.
pub fn key_file(data: &Path, cc: &str) -> PathBuf {
    let path = data.join(format!("{}.key", cc.to_ascii_lowercase()));
    if !path.exists() {
        std::fs::write(&path, homeward::store::seal::new_key_hex()).expect("key written");
    }
    path
}

/// The database of node `cc` whose files live in `data`: a SQLite file
/// there, or (with `HOMEWARD_TEST_STORE=postgres`) a fresh PostgreSQL
/// database, the same one each time it is asked for.
pub fn database_url(data: &Path, cc: &str) -> String {
    if !pg::suites_on_postgres() {
        let db = data.join(format!("{}.db", cc.to_ascii_lowercase()));
        return format!("sqlite://{}", db.display());
    }
    static URLS: std::sync::Mutex<Vec<(PathBuf, String, String)>> =
        std::sync::Mutex::new(Vec::new());
    let mut urls = URLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, url)) = urls.iter().find(|(d, c, _)| d == data && c == cc) {
        return url.clone();
    }
    let url = pg::fresh_database().expect("PostgreSQL test database");
    urls.push((data.to_path_buf(), cc.to_string(), url.clone()));
    url
}

/// A plain connection pool on a node's database, behind the gateway's back.
pub async fn any_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.expect("database opens")
}

/// Every row of every table of a PostgreSQL database, as text.
pub async fn database_text(url: &str) -> String {
    let pool = any_pool(url).await;
    let mut text = String::new();
    for table in [
        "outbox",
        "inbox",
        "case_log",
        "timers",
        "case_events",
        "audit",
        "purged_cases",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&pool)
            .await
            .expect("table dump");
        for (row,) in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    pool.close().await;
    text
}
