//! The operators' dashboard in a real browser: a gateway with seeded data
//! (a delivered referral whose answer is overdue, a rejection, three
//! messages waiting for an unreachable peer) is loaded in headless Chromium,
//! and the seeded figures must appear in the rendered page. A screenshot is
//! kept in `target/test-artifacts/dashboard.png`.
//!
//! Without Chromium the test says it is skipped, unless
//! `HOMEWARD_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;
use homeward::clock::{ManualClock, SharedClock};
use serde_json::json;

fn chromium() -> Option<PathBuf> {
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

fn browse(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_seeded_figures_in_a_real_browser() {
    let Some(browser) = chromium() else {
        if std::env::var("HOMEWARD_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!(
                "HOMEWARD_REQUIRE_BROWSER=1 but no Chromium found (install Debian's `chromium`)"
            );
        }
        eprintln!(
            "SKIPPED the_dashboard_shows_the_seeded_figures_in_a_real_browser: Chromium not installed"
        );
        return;
    };
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let agreements = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(agreements_dir().join("kh-th.toml"))
        .unwrap()
        .replace(
            "withheld = []",
            "withheld = [\"referral.notify:/person/date_of_birth\"]",
        );
    std::fs::write(agreements.path().join("kh-th.toml"), text).unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_settings.agreements.dir = agreements.path().to_path_buf();
    let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    let kh = start(kh_settings, kh_l).await;
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let shared: SharedClock = clock.clone();
    // TH's deliveries are the test's steps.
    let (th, th_worker) = start_manual_with(th_settings, th_l, shared).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let wait = Duration::from_secs(20);

    // Delivered; KH never answers.
    let a = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    assert_eq!(th_api.submit(&a).await.unwrap().status, 202);
    assert_eq!(
        step_one(&th_worker, &th_api, a["message_id"].as_str().unwrap()).await["state"],
        "delivered"
    );
    // KH's agreement withholds dates of birth: rejected.
    let mut b = referral("TH", "KH", &case_ref("TH", "KH", 2), 2);
    b["payload"]["person"]["date_of_birth"] = json!("2001-01-01");
    assert_eq!(th_api.submit(&b).await.unwrap().status, 202);
    assert_eq!(
        step_one(&th_worker, &th_api, b["message_id"].as_str().unwrap()).await["state"],
        "rejected"
    );
    // Four days later the acknowledgement of the first is overdue.
    clock.advance(time::Duration::days(4));
    eventually("the breach", wait, || async {
        th_api.timers(Some("breached")).await.unwrap().body["timers"]
            .as_array()
            .is_some_and(|t| t.len() == 1)
    })
    .await;
    // KH goes away; three referrals wait.
    kh.stop().await;
    for i in 3..=5 {
        assert_eq!(
            th_api
                .submit(&referral("TH", "KH", &case_ref("TH", "KH", i), i))
                .await
                .unwrap()
                .status,
            202
        );
    }
    // One step: the three go together and fail (retried later).
    assert_eq!(step(&th_worker).await, 3, "failed attempts");
    assert!(th_api.inbox(None, None).await.is_ok());
    let dashboard = th_api
        .with_token(OPERATOR_TOKEN)
        .dashboard()
        .await
        .unwrap()
        .body;
    assert_eq!(dashboard["peers"][0]["reachable"], false, "{dashboard}");
    // The test PKI is valid for 30 days from now, and the clock is 4 days on.
    let expiring = dashboard["certificates_expiring"].as_array().unwrap();
    let tls = expiring
        .iter()
        .find(|c| c["which"] == "tls")
        .expect("own TLS listed");
    assert!(
        (24..=26).contains(&tls["days_left"].as_i64().unwrap()),
        "{tls}"
    );
    assert!(
        tls["subject"]
            .as_str()
            .unwrap()
            .contains("homeward-node-TH"),
        "{tls}"
    );
    for which in ["api_tls", "signing", "ca:KH"] {
        assert!(
            expiring.iter().any(|c| c["which"] == which),
            "{which}: {dashboard}"
        );
    }

    let profile = tempfile::tempdir().unwrap();
    let url = format!(
        "https://127.0.0.1:{}/#token={OPERATOR_TOKEN}",
        th.api_addr.port()
    );
    let out = browse(&browser, &url, profile.path(), &["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "Homeward gateway TH",
        "TH-KH-2026-000003",      // the oldest pending message
        "personal_data_withheld", // the rejection's reason
        "TH-KH-2026-000001",      // the breached deadline
        "unreachable",            // KH
        ">3<",                    // three pending
        "<b>ca:KH</b>",           // the test CAs last 30 days: all expire soon
        "<b>signing</b>",
    ] {
        assert!(
            dom.contains(expected),
            "`{expected}` not on the rendered page:\n{dom}"
        );
    }

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let profile = tempfile::tempdir().unwrap();
    let out = browse(
        &browser,
        &url,
        profile.path(),
        &[format!("--screenshot={}", shot.display())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot"
    );
    th.stop().await;
}
