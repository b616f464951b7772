//! The operators' dashboard in a real browser: a gateway with seeded data
//! (a delivered referral whose answer is overdue, a rejection, three
//! messages waiting for an unreachable peer) is loaded in headless Chromium,
//! and the seeded figures must appear in the rendered page. A screenshot is
//! kept in `target/test-artifacts/dashboard.png`. A second test takes
//! synthetic returnees from referral to handover on two corridors and
//! reads the chart of returnees per month (its segments, suppressed cells,
//! legend) from the rendered page; its screenshot is
//! `target/test-artifacts/dashboard-chart.png`.
//!
//! Without Chromium the test says it is skipped, unless
//! `HOMEWARD_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;
use homeward::clock::{ManualClock, SharedClock};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_seeded_figures_in_a_real_browser() {
    let Some(browser) =
        chromium_or_skip("the_dashboard_shows_the_seeded_figures_in_a_real_browser")
    else {
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
        "No returnees in the last 12 months.", // nothing handed over
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

/// The `n`th month before now's (UTC), as `YYYY-MM`, and a handover time on
/// its 15th.
fn months_ago(n: i32) -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let index = now.year() * 12 + i32::from(u8::from(now.month())) - 1 - n;
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    (
        format!("{year:04}-{month:02}"),
        format!("{year:04}-{month:02}-15T10:00:00Z"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_charts_returnees_per_month_with_small_cells_hidden() {
    let Some(browser) =
        chromium_or_skip("the_dashboard_charts_returnees_per_month_with_small_cells_hidden")
    else {
        return;
    };
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (kh_l, th_l, vn_l) = (bind(), bind(), bind());
    let kh_settings = settings_for(
        &pki,
        "KH",
        data.path(),
        &kh_l,
        &[("TH", th_l.peer_addr()), ("VN", vn_l.peer_addr())],
    );
    let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    let vn_settings = settings_for(&pki, "VN", data.path(), &vn_l, &[("KH", kh_l.peer_addr())]);
    let kh = start(kh_settings, kh_l).await;
    let th = start(th_settings, th_l).await;
    let vn = start(vn_settings, vn_l).await;
    let (kh_api, th_api, vn_api) = (
        api(&pki, "KH", kh.api_addr),
        api(&pki, "TH", th.api_addr),
        api(&pki, "VN", vn.api_addr),
    );
    // Two months ago, from TH: 2 women and 2 men (both hidden, each the
    // other's complement). Last month, from VN: 5 women and 6 men (shown;
    // no line holds them beside a lone hidden cell).
    let (older, older_at) = months_ago(2);
    let (newer, newer_at) = months_ago(1);
    let th_persons: Vec<Person> = vec![
        ("female", 30, false),
        ("female", 31, false),
        ("male", 32, false),
        ("male", 33, false),
    ];
    let mut vn_persons: Vec<Person> = vec![("female", 28, false); 5];
    vn_persons.extend([("male", 41, false); 6]);
    run_cases("TH", &th_api, &kh_api, &th_persons, 800, &older_at).await;
    run_cases("VN", &vn_api, &kh_api, &vn_persons, 900, &newer_at).await;
    let table = kh_api
        .with_token(OPERATOR_TOKEN)
        .get(&format!(
            "/v1/statistics?count=returnees&from={older}-01&to={newer}-28&group_by=month,corridor,sex"
        ))
        .await
        .unwrap();
    assert_eq!(table.status, 200, "{}", table.body);
    assert_eq!(table.body["total"]["shown"], "15", "{}", table.body);

    let profile = tempfile::tempdir().unwrap();
    let url = format!(
        "https://127.0.0.1:{}/#token={OPERATOR_TOKEN}",
        kh.api_addr.port()
    );
    let out = browse(&browser, &url, profile.path(), &["--dump-dom".to_string()]);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let chart = dom
        .split_once("<div id=\"chart\">")
        .and_then(|(_, rest)| rest.split_once("<p class=\"chart-note\""))
        .map(|(chart, _)| chart)
        .unwrap_or_else(|| panic!("no chart on the page:\n{dom}"));
    assert!(chart.contains("<svg"), "no SVG drawn:\n{chart}");
    // Every segment's title: month, corridor, sex and the value shown.
    let titles: Vec<&str> = chart
        .split("<title>")
        .skip(1)
        .filter_map(|t| t.split_once("</title>").map(|(t, _)| t))
        .filter(|t| t.as_bytes().first().is_some_and(u8::is_ascii_digit))
        .collect();
    let expected = [
        format!("{older}, KH-TH, female: &lt;5"),
        format!("{older}, KH-TH, male: &lt;5"),
        format!("{newer}, KH-VN, female: 5"),
        format!("{newer}, KH-VN, male: 6"),
    ];
    assert_eq!(titles, expected, "segments:\n{chart}");
    assert_eq!(
        chart.matches("class=\"seg hidden-count\"").count(),
        2,
        "the two suppressed cells hatched:\n{chart}"
    );
    assert_eq!(chart.matches("class=\"seg\"").count(), 2, "{chart}");
    // Twelve months, each labelled; the two corridors under their bars.
    assert_eq!(chart.matches("class=\"month-group\"").count(), 12);
    for label in [">KH-TH</text>", ">KH-VN</text>", ">Returnees</text>"] {
        assert!(
            chart.contains(label),
            "`{label}` not in the chart:\n{chart}"
        );
    }
    for expected in [
        "</svg>female</span>",
        "</svg>male</span>",
        "</svg>other</span>",
        "</svg>unknown</span>",
        "fewer than 5 (hatched, not to scale)",
        "Counts below 5 are hidden and shown as &lt;5",
        "Total in the period: 15.",
    ] {
        assert!(
            dom.contains(expected),
            "`{expected}` not on the rendered page:\n{dom}"
        );
    }
    // Nothing personal from the seeded messages reaches the page.
    for personal in [
        "Synthetic Returnee",
        "Test Person",
        "តេស្ត",
        "Synthetic Shelter",
        "Synthetic Officer",
        "SYN-2026",
    ] {
        assert!(!dom.contains(personal), "`{personal}` on the page:\n{dom}");
    }

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard-chart.png");
    let profile = tempfile::tempdir().unwrap();
    let out = browse(
        &browser,
        &url,
        profile.path(),
        &[
            "--window-size=1366,2400".to_string(),
            format!("--screenshot={}", shot.display()),
        ],
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
    for g in [th, vn, kh] {
        g.stop().await;
    }
}
