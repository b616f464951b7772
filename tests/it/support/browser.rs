//! Debian's Chromium for the tests that render pages: where it is, the
//! rule that a missing browser skips a test unless
//! `HOMEWARD_REQUIRE_BROWSER=1` (set by `.ci/run`), and one headless run.

use std::path::PathBuf;

/// `HOMEWARD_CHROMIUM`, else where Debian and Ubuntu install it.
pub fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("HOMEWARD_CHROMIUM").ok(),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Chromium, or `None` when it is missing and not required (the test says
/// it is skipped).
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        if std::env::var("HOMEWARD_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!(
                "HOMEWARD_REQUIRE_BROWSER=1 but no Chromium found (install Debian's `chromium`)"
            );
        }
        eprintln!("SKIPPED {test}: Chromium not installed");
    }
    found
}

/// One headless run of `browser` on `url`, in the profile `profile`, with
/// `extra` arguments (`--dump-dom`, `--screenshot=…`; a later
/// `--window-size` wins).
pub fn browse(
    browser: &PathBuf,
    url: &str,
    profile: &std::path::Path,
    extra: &[String],
) -> std::process::Output {
    std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            // The test PKI's CA is not in the browser's store.
            "--ignore-certificate-errors",
            "--virtual-time-budget=8000",
            "--window-size=1366,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}
