//! The printed handover record and the person's own timeline, from a real
//! case between two gateways (TH hosts, KH is the origin) driven to a
//! handover and its countersignature, with synthetic names in Khmer script
//! and in Latin script (one with markup in it). The HTML is read on both
//! sides; the PDF is rendered by real headless Chromium and read back with
//! `pdftotext`; a screenshot is kept in `target/test-artifacts/`.
//!
//! Without Chromium the browser parts say they are skipped, unless
//! `HOMEWARD_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::support::*;
use homeward::app::delivery::Worker;
use reqwest::Method;
use serde_json::{Value, json};

/// Synthetic people; nobody real.
const REFERRED_NATIVE: &str = "សុខា តេស្តសាកល្បង";
const REFERRED_LATIN: &str = "Sokha Testsample";
const GROUPMATE_NATIVE: &str = "ដារា គំរូ";
/// A name with markup in it: printed as text, never as markup.
const GROUPMATE_LATIN: &str = "Dara <b>Groupmate</b>";
const GROUPMATE_ESCAPED: &str = "Dara &lt;b&gt;Groupmate&lt;/b&gt;";

/// The labels of `lang` as the translation file holds them.
fn labels(lang: &str) -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("config/i18n/{lang}.toml"));
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Whether the browser parts of `test` run; panics when they must.
fn browser_or_skip(test: &str) -> bool {
    chromium_or_skip(test).is_some()
}

/// Submits, delivers with one step of the sender's worker; the message id.
async fn send((api, worker): (&Api, &Arc<Worker>), msg: Value) -> String {
    let r = api.submit(&msg).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let id = msg["message_id"].as_str().unwrap().to_string();
    let status = step_one(worker, api, &id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    id
}

/// A page: status, headers and text.
async fn page(api: &Api, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = api.request(Method::GET, path).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// KH and TH, KH configured with a browser that is not there.
struct Pair2 {
    th: homeward::gateway::RunningGateway,
    kh: homeward::gateway::RunningGateway,
    th_api: Api,
    kh_api: Api,
    th_worker: Arc<Worker>,
    kh_worker: Arc<Worker>,
    _pki: Pki,
    _data: tempfile::TempDir,
}

async fn pair() -> Pair2 {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_settings.reports.chromium = Some("/nonexistent/chromium-for-test".into());
    let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    let (kh, kh_worker) = start_manual(kh_settings, kh_l).await;
    let (th, th_worker) = start_manual(th_settings, th_l).await;
    Pair2 {
        th_api: api(&pki, "TH", th.api_addr),
        kh_api: api(&pki, "KH", kh.api_addr),
        th,
        kh,
        th_worker,
        kh_worker,
        _pki: pki,
        _data: data,
    }
}

fn request_payload() -> Value {
    let mut p = example_payload("repatriation.request", |p| {
        p["persons"].as_array().is_some_and(|a| a.len() == 1)
    });
    p["persons"] = json!([
        {"person_ref": "TH-P1", "name_native": REFERRED_NATIVE, "name_latin": REFERRED_LATIN,
         "sex": "female", "estimated_age": 15, "presumed_minor": true},
        {"person_ref": "TH-P2", "name_native": GROUPMATE_NATIVE, "name_latin": GROUPMATE_LATIN,
         "sex": "male", "date_of_birth": "1990-05-01", "presumed_minor": false},
    ]);
    p
}

/// A v2 record (it names its border gate, POIPET).
fn handover_payload(record: &str) -> Value {
    let mut p = example_payload_v("repatriation.handover", 2, |p| {
        p["record"] == record && p["gate"] == "POIPET"
    });
    p["persons"] = json!(["TH-P1", "TH-P2"]);
    p["belongings"] = json!(["one bag of clothes", "a <small> radio"]);
    if record == "countersignature" {
        p["remarks"] = json!("Both received in good health (synthetic).");
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_record_and_the_persons_timeline_print_from_a_real_case() {
    let p = pair().await;
    let (th, kh) = (&p.th_api, &p.kh_api);
    let (th_sends, kh_sends) = ((th, &p.th_worker), (kh, &p.kh_worker));
    let case = case_ref("TH", "KH", 18);
    let (en, km, thai) = (labels("en"), labels("km"), labels("th"));

    let mut referral = referral("TH", "KH", &case, 1);
    referral["payload"]["person"]["name_native"] = json!(REFERRED_NATIVE);
    referral["payload"]["person"]["name_latin"] = json!(REFERRED_LATIN);
    let referral_id = send(th_sends, referral).await;

    // Before any handover: 404 with the standard body; the timeline prints.
    let r = th.get(&format!("/v1/cases/{case}/handover")).await.unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "no_handover", "{}", r.body);
    let (status, _, sheet) = page(kh, &format!("/v1/cases/{case}/timeline-for-person")).await;
    assert_eq!(status, 200, "{sheet}");
    assert!(
        sheet.contains(&km["next_referred"].replace("{origin}", "កម្ពុជា")),
        "{sheet}"
    );
    assert!(
        sheet.contains(&km["due_referral_acknowledge"]),
        "the awaited answer: {sheet}"
    );

    let ack = envelope(
        "referral.acknowledge",
        "KH",
        "TH",
        &case,
        Some(&referral_id),
        example_payload("referral.acknowledge", |p| p["accepted"] == true),
    );
    send(kh_sends, ack).await;
    let request = send(
        th_sends,
        envelope(
            "repatriation.request",
            "TH",
            "KH",
            &case,
            None,
            request_payload(),
        ),
    )
    .await;
    let confirm = example_payload("repatriation.confirm", |p| {
        p["decision"] == "accepted" && p.get("persons_accepted").is_none()
    });
    let agreed = confirm["confirmed_date"].as_str().unwrap().to_string();
    send(
        kh_sends,
        envelope(
            "repatriation.confirm",
            "KH",
            "TH",
            &case,
            Some(&request),
            confirm,
        ),
    )
    .await;
    let handover = send(
        th_sends,
        envelope_v(
            2,
            "repatriation.handover",
            "TH",
            "KH",
            &case,
            None,
            handover_payload("handover"),
        ),
    )
    .await;
    send(
        kh_sends,
        envelope_v(
            2,
            "repatriation.handover",
            "KH",
            "TH",
            &case,
            Some(&handover),
            handover_payload("countersignature"),
        ),
    )
    .await;

    // The record, on both sides: each holds the messages of both directions.
    let path = format!("/v1/cases/{case}/handover");
    let mut pages = Vec::new();
    for api in [th, kh] {
        let (status, headers, html) = page(api, &path).await;
        assert_eq!(status, 200, "{html}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(
            !csp.contains("script-src") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
        pages.push(html);
    }
    let html = &pages[0];
    for key in [
        "handover_title",
        "handover_place",
        "persons_handed_over",
        "signed_handed_over_by",
        "signed_received_by",
        "age_15_17",
        "age_18_over",
        "sex_female",
        "sex_male",
    ] {
        for (lang, labels) in [("en", &en), ("km", &km), ("th", &thai)] {
            let text = &labels[key];
            assert!(
                html.contains(text.as_str()),
                "{lang} label {key} `{text}` missing"
            );
        }
    }
    assert!(
        !html.contains(&labels("vi")["handover_title"]),
        "only the two parties' languages"
    );
    // The border gate by its names in the corridor's agreement.
    let agreement: toml::Value =
        toml::from_str(&std::fs::read_to_string(agreements_dir().join("kh-th.toml")).unwrap())
            .unwrap();
    let poipet = agreement["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["code"].as_str() == Some("POIPET"))
        .unwrap();
    for lang in ["en", "km", "th"] {
        let name = poipet["names"][lang].as_str().unwrap();
        assert!(html.contains(name), "gate name ({lang}) `{name}` missing");
    }
    assert!(html.contains(&en["handover_gate"]) && html.contains(&km["handover_gate"]));
    for expected in [
        REFERRED_NATIVE,
        REFERRED_LATIN,
        GROUPMATE_NATIVE,
        GROUPMATE_ESCAPED,
        "a &lt;small&gt; radio",
        "Poipet–Aranyaprathet international checkpoint",
        "2027-01-12 10:30 (UTC+07:00)",
        "Somchai Sample",
        "Dara Example",
        "MOSVY Poipet Transit Centre",
        "certificate of identity",
        "Both received in good health (synthetic).",
        &case,
    ] {
        assert!(html.contains(expected), "`{expected}` not on the page");
    }
    assert!(!html.contains("<b>Groupmate"), "a name is text, not markup");
    assert!(!html.contains("<small>"), "a belonging is text, not markup");
    assert!(!html.to_lowercase().contains("<script"), "no script");
    assert_eq!(
        html.matches("class=\"person\"").count(),
        2,
        "one block per person"
    );
    assert!(html.contains("@page { size: A4"), "A4 print style");
    assert!(
        !html.contains(&en["not_countersigned"]),
        "the countersignature is found"
    );
    // KH's page names KH as where it was printed; the record is the same.
    let strip = |h: &str| h.split("<footer>").next().unwrap().to_string();
    assert_eq!(strip(&pages[0]), strip(&pages[1]));

    // The person's own sheet: their language, their name only.
    let (status, headers, sheet) = page(kh, &format!("/v1/cases/{case}/timeline-for-person")).await;
    assert_eq!(status, 200, "{sheet}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(
        sheet.contains("<html lang=\"km\">"),
        "the origin's language by default"
    );
    for expected in [
        km["timeline_title"].clone(),
        km["event_return_agreed"].replace("{date}", &agreed),
        km["event_handed_over"].replace("{place}", "Poipet–Aranyaprathet international checkpoint"),
        km["event_countersigned"].clone(),
        km["next_handed_over"].replace("{origin}", "កម្ពុជា"),
        REFERRED_NATIVE.to_string(),
        REFERRED_LATIN.to_string(),
        "2026-11-22".to_string(), // the referral's created_at, both sides hold it
    ] {
        assert!(
            sheet.contains(&expected),
            "`{expected}` not on the sheet:\n{sheet}"
        );
    }
    for other in [GROUPMATE_NATIVE, "Groupmate", "Somchai", "TH-P2"] {
        assert!(
            !sheet.contains(other),
            "another person's data on the sheet: {other}"
        );
    }
    let (status, _, thai_sheet) =
        page(th, &format!("/v1/cases/{case}/timeline-for-person?lang=th")).await;
    assert_eq!(status, 200);
    assert!(thai_sheet.contains("<html lang=\"th\">"));
    assert!(thai_sheet.contains(&thai["timeline_happened"]));
    assert!(
        thai_sheet.contains(
            &thai["event_referred"]
                .replace("{host}", "ไทย")
                .replace("{origin}", "กัมพูชา")
        )
    );

    // Each print is audited.
    let audit = th.with_token(ADMIN_TOKEN).audit(Some(&case)).await.unwrap();
    let actions: Vec<&str> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(actions.contains(&"handover.print"), "{actions:?}");
    assert!(actions.contains(&"timeline.print"), "{actions:?}");

    // KH has no browser: a clear refusal that names it and the key.
    let r = kh.get(&format!("{path}?format=pdf")).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "pdf_unavailable");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/nonexistent/chromium-for-test"),
        "{message}"
    );
    assert!(message.contains("[reports] chromium"), "{message}");

    let test = "handover_record_and_the_persons_timeline_print_from_a_real_case";
    if browser_or_skip(test) {
        pdf_and_screenshot(th, &path, html, &en, &thai, &km).await;
        screenshot(&sheet, "timeline-for-person-km.png");
    }
    p.th.stop().await;
    p.kh.stop().await;
}

/// The PDF through real Chromium, read back with `pdftotext`; a
/// screenshot of the page.
async fn pdf_and_screenshot(
    th: &Api,
    path: &str,
    html: &str,
    en: &BTreeMap<String, String>,
    thai: &BTreeMap<String, String>,
    km: &BTreeMap<String, String>,
) {
    let resp = th
        .request(Method::GET, &format!("{path}?format=pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("handover-TH-KH-2026-000018.pdf")
    );
    let pdf = resp.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let pdf_file = artifacts.join("handover.pdf");
    std::fs::write(&pdf_file, &pdf).unwrap();

    match pdftotext(&pdf_file) {
        None if std::env::var("HOMEWARD_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("HOMEWARD_REQUIRE_BROWSER=1 but no pdftotext (install Debian's `poppler-utils`)")
        }
        None => eprintln!("SKIPPED the PDF's text: pdftotext not installed"),
        Some(text) => {
            // Khmer words are shaped into glyph clusters whose text
            // pdftotext may give back reordered; the Latin and Thai texts
            // come back as they were, Khmer is checked character by
            // character below.
            for expected in [
                en["handover_title"].as_str(),
                en["signed_received_by"].as_str(),
                thai["handover_title"].as_str(),
                thai["signed_received_by"].as_str(),
                REFERRED_LATIN,
                "Dara <b>Groupmate</b>",
                "TH-KH-2026-000018",
            ] {
                assert!(
                    text.contains(expected),
                    "`{expected}` not in the PDF's text:\n{text}"
                );
            }
            for (what, khmer) in [
                ("the Khmer title", km["handover_title"].as_str()),
                ("the Khmer name", REFERRED_NATIVE),
            ] {
                assert!(
                    khmer_found(&text, khmer),
                    "{what} `{khmer}` not in the PDF:\n{text}"
                );
            }
        }
    }

    // A screenshot of the page as a browser shows it (the page needs a
    // token, so the browser reads the HTML the API answered).
    screenshot(html, "handover.png");
}

/// A screenshot of `html` in `target/test-artifacts/<name>`.
fn screenshot(html: &str, name: &str) {
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.html");
    std::fs::write(&page, html).unwrap();
    let shot = artifacts.join(name);
    let _ = std::fs::remove_file(&shot);
    let out = browse(
        &chromium().unwrap(),
        &format!("file://{}", page.display()),
        &dir.path().join("profile"),
        &[
            "--window-size=1000,1400".to_string(),
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
        "no screenshot {name}"
    );
}

fn pdftotext(pdf: &Path) -> Option<String> {
    let out = std::process::Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `khmer` is in `text`: as written, or (pdftotext gives shaped
/// Khmer back with its characters in glyph order) every word of it with
/// the same characters in some order.
fn khmer_found(text: &str, khmer: &str) -> bool {
    if text.contains(khmer) {
        return true;
    }
    let sorted = |s: &str| {
        let mut c: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
        c.sort();
        c
    };
    let lines: Vec<Vec<char>> = text.lines().map(sorted).collect();
    khmer.split_whitespace().all(|word| {
        let want = sorted(word);
        lines.iter().any(|line| contains_multiset(line, &want))
    })
}

/// Whether sorted `have` holds every char of sorted `want` (with counts).
fn contains_multiset(have: &[char], want: &[char]) -> bool {
    let mut i = 0;
    for c in want {
        while i < have.len() && have[i] < *c {
            i += 1;
        }
        if i == have.len() || have[i] != *c {
            return false;
        }
        i += 1;
    }
    true
}

#[tokio::test]
async fn bad_requests_get_the_standard_body() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", 19);
    send((&th, pair.th_worker()), referral("TH", "KH", &case, 1)).await;
    let handover = format!("/v1/cases/{case}/handover");
    let timeline = format!("/v1/cases/{case}/timeline-for-person");
    let cases: Vec<(String, &str, u16, &str, &str)> = vec![
        (
            handover.clone(),
            TOKEN,
            404,
            "no_handover",
            "no repatriation.handover",
        ),
        (
            format!("{handover}?format=docx"),
            TOKEN,
            400,
            "bad_format",
            "`format` must be one of html, pdf",
        ),
        (
            format!("{handover}?format="),
            TOKEN,
            400,
            "bad_format",
            "html, pdf",
        ),
        (
            format!("{handover}?colour=red"),
            TOKEN,
            400,
            "bad_query",
            "colour",
        ),
        (
            "/v1/cases/TH-KH-2026-999999/handover".into(),
            TOKEN,
            404,
            "not_found",
            "case",
        ),
        (
            handover.clone(),
            OPERATOR_TOKEN,
            403,
            "forbidden",
            "caseworker",
        ),
        (
            format!("{timeline}?lang=fr"),
            TOKEN,
            400,
            "bad_lang",
            "`lang` must be one of en, km, th, vi, ms",
        ),
        (
            format!("{timeline}?lang="),
            TOKEN,
            400,
            "bad_lang",
            "en, km, th, vi, ms",
        ),
        (
            format!("{timeline}?lang=KM"),
            TOKEN,
            400,
            "bad_lang",
            "lang",
        ),
        (
            "/v1/cases/TH-KH-2026-999999/timeline-for-person".into(),
            TOKEN,
            404,
            "not_found",
            "case",
        ),
        (
            "/v1/cases/TH-KH-2026-999999/timeline-for-person?lang=xx".into(),
            TOKEN,
            400,
            "bad_lang",
            "lang",
        ),
        (
            timeline.clone(),
            ADMIN_TOKEN,
            403,
            "forbidden",
            "caseworker",
        ),
    ];
    for (path, token, status, code, says) in cases {
        let r = th.with_token(token).get(&path).await.unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{path}: {}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message}");
    }
    let r = Api::send(th.http().get(format!("{}{handover}", th.base())))
        .await
        .unwrap();
    assert_eq!(r.status, 401, "no credential: {}", r.body);
    // The receiver holds the case too: its sheet prints, in Khmer.
    let (status, _, sheet) = page(&kh, &timeline).await;
    assert_eq!(status, 200, "{sheet}");
    assert!(sheet.contains("<html lang=\"km\">"));
    pair.stop().await;
}

/// `[reports]` is read from the file and the environment, and a bad value
/// stops the gateway at start naming the key.
#[test]
fn report_settings_are_checked_at_start() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let s = settings(&pki, "KH", dir.path(), (any, any), &[("TH", any)]);
    let config = dir.path().join("kh.toml");
    std::fs::write(&config, toml::to_string(&s).unwrap()).unwrap();
    let a_dir = dir.path().to_str().unwrap();
    for (key, value, named) in [
        (
            "HOMEWARD_REPORTS__PDF_TIMEOUT_MS",
            "5",
            "reports.pdf_timeout_ms",
        ),
        ("HOMEWARD_REPORTS__CHROMIUM", a_dir, "reports.chromium"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env(key, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(
            err.contains(named) && err.contains("kh.toml"),
            "{key}: {err}"
        );
    }
}
