//! The operator commands against a real gateway's store: outbox list, show,
//! cancel and retry, timers list, check-config; and `serve` refusing a
//! SQLite file another gateway holds.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn homeward(args: &[&str], config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn outbox_and_timer_commands_work_on_a_stopped_gateway() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    // KH is never started, and TH's worker never runs: its messages stay
    // queued.
    let kh = Unreachable::new();
    let listeners = bind();
    let s = settings_for(&pki, "TH", data.path(), &listeners, &[("KH", kh.addr)]);
    let (th, _worker) = start_manual(s.clone(), listeners).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let a = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let b = referral("TH", "KH", &case_ref("TH", "KH", 2), 2);
    for m in [&a, &b] {
        assert_eq!(th_api.submit(m).await.unwrap().status, 202);
    }
    th.stop().await;
    let config = data.path().join("th-cli.toml");
    std::fs::write(&config, toml::to_string(&s).unwrap()).unwrap();
    let (ida, idb) = (
        a["message_id"].as_str().unwrap(),
        b["message_id"].as_str().unwrap(),
    );

    let (code, out) = homeward(&["outbox", "list"], &config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(ida) && out.contains(idb), "{out}");
    let (code, out) = homeward(&["outbox", "show", ida], &config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TH-KH-2026-000001"), "{out}");

    let (code, out) = homeward(&["outbox", "retry", ida], &config);
    assert_eq!(code, 1, "a queued message is not retried: {out}");
    let (code, out) = homeward(&["outbox", "cancel", ida], &config);
    assert_eq!(code, 0, "{out}");
    let (_, out) = homeward(&["outbox", "list", "--state", "dead"], &config);
    assert!(out.contains(ida) && !out.contains(idb), "{out}");
    let (code, out) = homeward(&["outbox", "retry", ida], &config);
    assert_eq!(code, 0, "{out}");
    let (_, out) = homeward(&["outbox", "list", "--state", "queued"], &config);
    assert!(out.contains(ida), "{out}");
    let (code, out) = homeward(
        &["outbox", "show", "01936f3e-5b7a-7c2d-9a61-ffffffffffff"],
        &config,
    );
    assert_eq!(code, 1, "{out}");

    let (code, out) = homeward(&["timers", "list", "--state", "open"], &config);
    assert_eq!(code, 0, "{out}");

    // The test PKI lives 30 days: check-config says so and exits 1.
    let (code, out) = homeward(&["check-config"], &config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("EXPIRING") && out.contains("tls.cert"),
        "{out}"
    );
}

#[test]
fn check_config_passes_on_the_shipped_configuration() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .current_dir(root)
        .args(["check-config", "--config", "config/nodes/kh.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("agreement `kh-th`"), "{text}");
    assert!(
        text.contains("tls.sign_cert `certs-dev/kh/sign.pem` signs for node KH"),
        "{text}"
    );
    // The TLS certificate and key offered as the signing ones: refused.
    let shipped = std::fs::read_to_string(root.join("config/nodes/kh.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("kh.toml");
    std::fs::write(
        &bad,
        shipped
            .replace("certs-dev/kh/sign.pem", "certs-dev/kh/peer.pem")
            .replace("certs-dev/kh/sign.key", "certs-dev/kh/peer.key"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .current_dir(root)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PROBLEM  tls.sign_cert"), "{text}");
}

#[tokio::test]
async fn a_second_serve_on_one_sqlite_file_is_refused_until_the_first_stops() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh = Unreachable::new();
    let addrs = (free_addr(), free_addr());
    let mut s = settings(&pki, "TH", data.path(), addrs, &[("KH", kh.addr)]);
    // A file even with HOMEWARD_TEST_STORE=postgres: the lock is SQLite's.
    let db = data.path().join("th-locked.db");
    s.database.url = format!("sqlite://{}", db.display());
    let mut first = Process::new(data.path(), &s, api(&pki, "TH", addrs.1));
    first.start().await;
    let pid = first.child.as_ref().and_then(|c| c.id()).expect("a pid");

    // The second on ports of its own, so only the database is in its way.
    let (peer2, api2) = (free_addr(), free_addr());
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
        .arg("serve")
        .arg("--config")
        .arg(&first.config)
        .env("HOMEWARD_PEER_API__LISTEN", peer2.to_string())
        .env("HOMEWARD_LOCAL_API__LISTEN", api2.to_string())
        .env("HOMEWARD_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("the second serve exits")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&db.display().to_string()), "{text}");
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    assert_eq!(first.api.health().await.unwrap().status, 200);

    // Killed, the first holds nothing: the kernel dropped its lock.
    first.kill().await;
    first.start().await;
    let pid2 = first.child.as_ref().and_then(|c| c.id()).expect("a pid");
    let lock = std::fs::read_to_string(data.path().join("th-locked.db.lock")).unwrap();
    assert_eq!(lock.trim(), pid2.to_string());
    first.kill().await;
}

/// KH's `homeward_reloads_total{result=...}` as a running gateway reports it.
async fn reloads(api: &Api, result: &str) -> u64 {
    let text = api
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .unwrap()
        .text;
    let series = format!("homeward_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn sighup_and_homeward_reload_reload_a_running_gateway_and_a_bad_file_is_named_first() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let th = Unreachable::new();
    let addrs = (free_addr(), free_addr());
    let mut s = settings(&pki, "KH", data.path(), addrs, &[("TH", th.addr)]);
    // The lock names the process: a SQLite file even with HOMEWARD_TEST_STORE=postgres.
    s.database.url = format!("sqlite://{}", data.path().join("kh-reload.db").display());
    let crl = data.path().join("th.crl.pem");
    std::fs::write(&crl, pki.crl("TH", &[])).unwrap();
    s.peers[0].crl = Some(crl.clone());
    s.tls.watch_interval_ms = 0;
    let mut kh = Process::new(data.path(), &s, api(&pki, "KH", addrs.1));
    kh.start().await;
    let pid = kh.child.as_ref().and_then(|c| c.id()).expect("a pid");

    // SIGHUP: reloaded, not stopped.
    let rc = unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGHUP) };
    assert_eq!(rc, 0);
    eventually("the SIGHUP reload", Duration::from_secs(10), || async {
        reloads(&kh.api, "ok").await == 1
    })
    .await;
    assert_eq!(kh.api.health().await.unwrap().status, 200);

    // `homeward reload` finds the gateway by its lock.
    let (code, text) = homeward(&["reload"], &kh.config);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("pid {pid}")), "{text}");
    eventually("the second reload", Duration::from_secs(10), || async {
        reloads(&kh.api, "ok").await == 2
    })
    .await;

    // A CRL that does not parse: named, and the gateway not asked.
    std::fs::write(&crl, "garbage").unwrap();
    let (code, text) = homeward(&["reload"], &kh.config);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&crl.display().to_string()), "{text}");
    // Sent anyway, by signal: the gateway refuses it and keeps serving.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGHUP) };
    eventually(
        "the refused reload counted",
        Duration::from_secs(10),
        || async { reloads(&kh.api, "refused").await == 1 },
    )
    .await;
    assert_eq!(kh.api.health().await.unwrap().status, 200);

    kh.kill().await;
    std::fs::write(&crl, pki.crl("TH", &[])).unwrap();
    let (code, text) = homeward(&["reload"], &kh.config);
    assert_eq!(code, 2, "no gateway runs: {text}");
}

/// `homeward demo`, as a new user runs it: a case on each corridor, the
/// refusal between two countries without an agreement, the statistics, the
/// reconciliation and the handover record, exit 0.
#[test]
fn the_demo_runs_every_corridor_and_ends_with_statistics_reconciliation_and_the_record() {
    let out = Command::new(env!("CARGO_BIN_EXE_homeward"))
        .arg("demo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for case in [
        "TH-KH-2026-000042 (KH–TH",
        "VN-KH-2026-000043 (KH–VN",
        "MY-KH-2026-000044 (KH–MY",
    ] {
        assert!(text.contains(case), "{case}: {text}");
    }
    assert!(
        text.contains("A referral from TH to VN is refused: HTTP 4"),
        "{text}"
    );
    assert!(
        text.contains("returnees by corridor,sex,minor,gate"),
        "{text}"
    );
    assert!(text.contains("KH-VN  female  yes  BAVET"), "{text}");
    for corridor in ["KH-TH", "KH-VN", "KH-MY"] {
        assert!(
            text.contains(&format!("  {corridor}: both sides agree")),
            "{corridor}: {text}"
        );
    }
    let record = text
        .lines()
        .find_map(|l| {
            l.split_once("print it to A4): ")
                .map(|(_, p)| p.to_string())
        })
        .expect("the demo names the record's file");
    let html = std::fs::read_to_string(&record).unwrap();
    assert!(
        html.contains("<html") && html.contains("TH-KH-2026-000042"),
        "{record}"
    );
}
