//! Consent governs sharing: a referral whose person did not consent to
//! sharing is refused, or crosses reduced to the agreement's minimal
//! fields, or crosses as it is on a lawful basis the agreement names (and
//! the audit says so); the receiver applies its own copy of the rule and
//! refuses what it withholds, storing nothing.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// The shipped agreements in `dir/name`, KH–TH's consent section replaced.
fn agreements_with(dir: &Path, name: &str, consent: &str) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(agreements_dir()).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "kh-th.toml" {
            let shipped = "without = \"refuse\"\nminimal = []\n";
            assert!(text.contains(shipped), "the shipped consent section");
            text = text.replace(shipped, consent);
        }
        std::fs::write(out.join(path.file_name().unwrap()), text).unwrap();
    }
    out
}

struct Pair2 {
    pki: Pki,
    data: tempfile::TempDir,
    kh: homeward::gateway::RunningGateway,
    th: homeward::gateway::RunningGateway,
    th_worker: std::sync::Arc<homeward::app::delivery::Worker>,
}

/// TH and KH, each under its own copy of the KH–TH consent rule.
async fn pair(th_consent: &str, kh_consent: &str) -> Pair2 {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_s = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_s.agreements.dir = agreements_with(data.path(), "kh-agreements", kh_consent);
    let mut th_s = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    th_s.agreements.dir = agreements_with(data.path(), "th-agreements", th_consent);
    let (kh, _kh_worker) = start_manual(kh_s, kh_l).await;
    let (th, th_worker) = start_manual(th_s, th_l).await;
    Pair2 {
        pki,
        data,
        kh,
        th,
        th_worker,
    }
}

const REFUSE: &str = "without = \"refuse\"\nminimal = []\n";
/// Only the staff who recorded consent, and document numbers, cross.
const MINIMAL: &str = "without = \"minimal\"\nminimal = [\"referral.notify:/consent/recorded_by\", \"referral.notify:/person/identity_documents/*/number\"]\n";
/// A looser copy that also lets the romanised name cross.
const LOOSER: &str = "without = \"minimal\"\nminimal = [\"referral.notify:/consent/recorded_by\", \"referral.notify:/person/identity_documents/*/number\", \"referral.notify:/person/name_latin\"]\n";

const NAME_LATIN: &str = "Qorvex Consentless";
const NAME_NATIVE: &str = "ឃ្លាំងព្រមទេ";

fn without_consent(n: usize) -> Value {
    let mut m = referral("TH", "KH", &case_ref("TH", "KH", n), n);
    m["payload"]["consent"]["to_share_information"] = json!(false);
    m["payload"]["person"]["name_latin"] = json!(NAME_LATIN);
    m["payload"]["person"]["name_native"] = json!(NAME_NATIVE);
    m["payload"]["person"]["identity_documents"] =
        json!([{"type": "passport", "number": "N0000009"}]);
    m
}

/// No planted name in clear in any of KH's SQLite files (the database, its
/// WAL, the lock); a PostgreSQL run has no files here to read.
fn kh_files_clean(data: &Path) {
    if std::env::var("HOMEWARD_TEST_STORE").as_deref() == Ok("postgres") {
        return;
    }
    let mut scanned = 0;
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("kh") || path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += 1;
        for needle in [NAME_LATIN, NAME_NATIVE, "N0000009"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "`{needle}` in clear in {name}"
            );
        }
    }
    assert!(scanned > 0);
}

fn id_of(m: &Value) -> String {
    m["message_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consent_a_refusing_agreement_sends_nothing_unless_a_named_lawful_basis_holds() {
    let p = pair(REFUSE, REFUSE).await;
    let th = api(&p.pki, "TH", p.th.api_addr);
    let m = without_consent(1);
    let r = th.submit(&m).await.unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "consent_withheld");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kh-th")
    );
    assert_eq!(
        r.body["error"]["details"][0]["pointer"],
        "/payload/consent/to_share_information"
    );
    assert_eq!(
        th.message(&id_of(&m)).await.unwrap().status,
        404,
        "nothing stored"
    );

    // A basis the agreement does not name, or one that does not hold.
    for (basis, why) in [
        ("legal_obligation", "not named"),
        ("best_interests_of_child", "an adult"),
    ] {
        let mut m = without_consent(2);
        m["payload"]["consent"]["lawful_basis"] = json!(basis);
        let r = th.submit(&m).await.unwrap();
        assert_eq!(r.status, 422, "{why}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "lawful_basis_invalid", "{why}");
        assert_eq!(
            r.body["error"]["details"][0]["pointer"],
            "/payload/consent/lawful_basis"
        );
    }
    // A child, in her best interests: crosses as it is, and the audit says why.
    let mut child = without_consent(3);
    child["payload"]["consent"]["lawful_basis"] = json!("best_interests_of_child");
    child["payload"]["person"]["estimated_age"] = json!(15);
    child["payload"]["person"]["presumed_minor"] = json!(true);
    let r = th.submit(&child).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.get("withheld").is_none(), "{}", r.body);
    let s = step_one(&p.th_worker, &th, &id_of(&child)).await;
    assert_eq!(s["state"], "delivered", "{s}");
    let got =
        p.kh.node
            .store
            .inbound(&id_of(&child))
            .await
            .unwrap()
            .unwrap();
    assert!(got.body.contains(NAME_LATIN), "as it was sent");
    let audit = th
        .with_token(ADMIN_TOKEN)
        .audit(Some(&case_ref("TH", "KH", 3)))
        .await
        .unwrap()
        .body;
    assert!(
        audit
            .to_string()
            .contains("lawful basis: best_interests_of_child"),
        "{audit}"
    );
    p.th.stop().await;
    p.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consent_a_minimal_agreement_sends_only_its_fields_and_says_which_it_withheld() {
    let p = pair(MINIMAL, MINIMAL).await;
    let th = api(&p.pki, "TH", p.th.api_addr);
    let m = without_consent(1);
    let r = th.submit(&m).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        r.body["withheld"],
        // (a shelter's name locates the person: personal too)
        json!([
            "/person/name_latin",
            "/person/name_native",
            "/placement/shelter_name"
        ]),
        "{}",
        r.body
    );
    // Neither side keeps the names: TH stored the reduced message.
    let sent =
        p.th.node
            .store
            .case_exchange(&case_ref("TH", "KH", 1))
            .await
            .unwrap();
    let text = sent[0].body.clone().expect("the stored body");
    assert!(
        !text.contains(NAME_LATIN) && !text.contains(NAME_NATIVE),
        "{text}"
    );
    let s = step_one(&p.th_worker, &th, &id_of(&m)).await;
    assert_eq!(s["state"], "delivered", "{s}");
    let got = p.kh.node.store.inbound(&id_of(&m)).await.unwrap().unwrap();
    let body: Value = serde_json::from_str(&got.body).unwrap();
    let person = &body["payload"]["person"];
    // The name the schema requires keeps its place; the other is gone;
    // what the list keeps is there.
    assert_eq!(person["name_latin"], "[withheld]");
    assert!(person.get("name_native").is_none());
    assert_eq!(person["identity_documents"][0]["number"], "N0000009");
    assert_eq!(
        body["payload"]["consent"]["recorded_by"],
        "Synthetic social worker"
    );
    // What KH's caseworker reads carries no name either.
    let kh = api(&p.pki, "KH", p.kh.api_addr);
    let inbox = read_inbox(&kh)
        .await
        .into_iter()
        .map(|v| v.to_string())
        .collect::<String>();
    assert!(!inbox.contains(NAME_LATIN) && !inbox.contains(NAME_NATIVE));
    // The same submission again: the same answer, nothing new.
    let again = th.submit(&m).await.unwrap();
    assert_eq!(
        (again.status, &again.body["withheld"]),
        (202, &r.body["withheld"])
    );
    p.th.stop().await;
    p.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_refuses_what_its_own_rule_withholds_and_stores_nothing() {
    // TH's copy lets the romanised name cross; KH's does not.
    let p = pair(LOOSER, MINIMAL).await;
    let th = api(&p.pki, "TH", p.th.api_addr);
    let m = without_consent(1);
    let r = th.submit(&m).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        r.body["withheld"],
        json!(["/person/name_native", "/placement/shelter_name"])
    );
    let s = step_one(&p.th_worker, &th, &id_of(&m)).await;
    assert_eq!(s["state"], "rejected", "{s}");
    assert!(s.to_string().contains("consent_violation"), "{s}");
    assert!(s.to_string().contains("/payload/person/name_latin"), "{s}");
    assert!(p.kh.node.store.inbound(&id_of(&m)).await.unwrap().is_none());
    // And a KH that refuses outright refuses even the reduced message.
    p.th.stop().await;
    p.kh.stop().await;
    let p = pair(MINIMAL, REFUSE).await;
    let th = api(&p.pki, "TH", p.th.api_addr);
    let m = without_consent(2);
    assert_eq!(th.submit(&m).await.unwrap().status, 202);
    let s = step_one(&p.th_worker, &th, &id_of(&m)).await;
    assert_eq!(s["state"], "rejected", "{s}");
    assert!(s.to_string().contains("consent_violation"), "{s}");
    p.th.stop().await;
    p.kh.stop().await;
}

#[test]
fn the_loader_refuses_a_bad_consent_rule_naming_file_and_key() {
    let data = tempfile::tempdir().unwrap();
    let registry = homeward::domain::message::SchemaRegistry::embedded().unwrap();
    for (consent, key) in [
        ("without = \"maybe\"\nminimal = []\n", "consent.without"),
        (
            "without = \"minimal\"\nminimal = [\"referral.notify:/person/sex\"]\n",
            "consent.minimal[0]",
        ),
        (
            "without = \"minimal\"\nminimal = [\"referral.nope:/person/name_latin\"]\n",
            "consent.minimal[0]",
        ),
        (
            "without = \"refuse\"\nminimal = [\"no-colon\"]\n",
            "consent.minimal[0]",
        ),
    ] {
        let dir = agreements_with(
            data.path(),
            &format!("a{}", key.len() + consent.len()),
            consent,
        );
        let e = homeward::domain::agreement::AgreementBook::load(&dir, &registry)
            .unwrap_err()
            .to_string();
        assert!(e.contains("kh-th.toml") && e.contains(key), "{e}");
    }
    let dir = data.path().join("bases");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(agreements_dir().join("kh-th.toml"))
        .unwrap()
        .replace("\"vital_interest\"]", "\"because\"]");
    std::fs::write(dir.join("kh-th.toml"), text).unwrap();
    let e = homeward::domain::agreement::AgreementBook::load(&dir, &registry)
        .unwrap_err()
        .to_string();
    assert!(e.contains("consent.lawful_bases[1]"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_mid_case_reduces_what_the_peer_holds_and_governs_later_messages() {
    let p = pair(REFUSE, REFUSE).await;
    let th = api(&p.pki, "TH", p.th.api_addr);
    let kh = api(&p.pki, "KH", p.kh.api_addr);
    let case = case_ref("TH", "KH", 1);
    // Consent given: the referral crosses whole.
    let mut first = without_consent(1);
    first["payload"]["consent"]["to_share_information"] = json!(true);
    assert_eq!(th.submit(&first).await.unwrap().status, 202);
    assert_eq!(
        step_one(&p.th_worker, &th, &id_of(&first)).await["state"],
        "delivered"
    );
    let held =
        p.kh.node
            .store
            .inbound(&id_of(&first))
            .await
            .unwrap()
            .unwrap();
    assert!(held.body.contains(NAME_LATIN));

    // The person withdraws it.
    let withdrawal = envelope(
        "referral.update",
        "TH",
        "KH",
        &case,
        None,
        json!({
            "reason": "consent_changed",
            "summary": "The person no longer agrees to share information.",
            "consent": {"to_share_information": false, "withdrawn": true,
                "recorded_by": "Synthetic social worker", "recorded_at": "2026-11-23T08:00:00Z"},
        }),
    );
    let r = th.submit(&withdrawal).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        step_one(&p.th_worker, &th, &id_of(&withdrawal)).await["state"],
        "delivered"
    );

    // KH holds no more of the person than the agreement allows without
    // consent: nothing personal (a required name keeps its place).
    let held =
        p.kh.node
            .store
            .inbound(&id_of(&first))
            .await
            .unwrap()
            .unwrap();
    assert!(
        !held.body.contains(NAME_LATIN) && !held.body.contains(NAME_NATIVE),
        "{}",
        held.body
    );
    assert!(!held.body.contains("N0000009"), "document numbers too");
    let body: Value = serde_json::from_str(&held.body).unwrap();
    assert_eq!(body["payload"]["person"]["name_latin"], "[withheld]");
    assert_eq!(
        body["payload"]["person"]["sex"], first["payload"]["person"]["sex"],
        "non-personal fields stay"
    );
    let inbox: String = read_inbox(&kh).await.iter().map(Value::to_string).collect();
    assert!(!inbox.contains(NAME_LATIN) && !inbox.contains(NAME_NATIVE));
    kh_files_clean(p.data.path());
    // Both case views say since when; both sides audited it.
    for side in [&th, &kh] {
        let view = side.case(&case).await.unwrap().body;
        assert!(view["consent_withheld_since"].is_string(), "{view}");
    }
    let audit = kh
        .with_token(ADMIN_TOKEN)
        .audit(Some(&case))
        .await
        .unwrap()
        .body;
    assert!(audit.to_string().contains("consent.withdrawn"), "{audit}");
    // A later message silent on consent follows the case.
    let later = update("TH", "KH", &case, 2);
    let r = th.submit(&later).await.unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "consent_withheld");
    // KH's evidence of the case is gone with the bytes; TH still has its own.
    let e = Api::send(
        kh.with_token(ADMIN_TOKEN)
            .request(reqwest::Method::GET, &format!("/v1/cases/{case}/evidence")),
    )
    .await
    .unwrap();
    assert_eq!(
        (e.status, e.body["error"]["code"].as_str()),
        (409, Some("case_reduced")),
        "{}",
        e.body
    );
    p.th.stop().await;
    p.kh.stop().await;
}

/// Two `homeward serve` processes with debug logs: after a minimal send
/// and after a withdrawal, neither log, no API answer of the receiver and
/// none of its SQLite files holds a withheld name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_withheld_value_reaches_the_receivers_files_answers_or_either_log() {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh_addrs = (free_addr(), free_addr());
    let th_addrs = (free_addr(), free_addr());
    let mut kh_s = settings(&pki, "KH", data.path(), kh_addrs, &[("TH", th_addrs.0)]);
    kh_s.agreements.dir = agreements_with(data.path(), "kh-agreements", MINIMAL);
    let mut th_s = settings(&pki, "TH", data.path(), th_addrs, &[("KH", kh_addrs.0)]);
    th_s.agreements.dir = agreements_with(data.path(), "th-agreements", MINIMAL);
    let mut kh = Process::new(data.path(), &kh_s, api(&pki, "KH", kh_addrs.1));
    let mut th = Process::new(data.path(), &th_s, api(&pki, "TH", th_addrs.1));
    kh.log_filter = "debug".into();
    th.log_filter = "debug".into();
    kh.start().await;
    th.start().await;
    let case = case_ref("TH", "KH", 1);
    // Sent without consent: reduced.
    let first = without_consent(1);
    assert_eq!(th.api.submit(&first).await.unwrap().status, 202);
    th.api
        .wait_final(&id_of(&first), WAIT)
        .await
        .expect("delivered");
    // A second case, with consent, then withdrawn.
    let second_case = case_ref("TH", "KH", 2);
    let mut second = without_consent(2);
    second["payload"]["consent"]["to_share_information"] = json!(true);
    assert_eq!(th.api.submit(&second).await.unwrap().status, 202);
    th.api
        .wait_final(&id_of(&second), WAIT)
        .await
        .expect("delivered");
    let withdrawal = envelope(
        "referral.update",
        "TH",
        "KH",
        &second_case,
        None,
        json!({"reason": "consent_changed", "summary": "Consent withdrawn.",
               "consent": {"to_share_information": false, "recorded_by": "Synthetic social worker",
                           "recorded_at": "2026-11-23T08:00:00Z"}}),
    );
    assert_eq!(th.api.submit(&withdrawal).await.unwrap().status, 202);
    th.api
        .wait_final(&id_of(&withdrawal), WAIT)
        .await
        .expect("delivered");

    // (document numbers are on this rule's minimal list: they may cross)
    let planted = [NAME_LATIN, NAME_NATIVE];
    let clean = |what: &str, text: &str| {
        for p in planted {
            assert!(!text.contains(p), "{what} holds `{p}`");
        }
    };
    for c in [&case, &second_case] {
        clean(
            "KH's case view",
            &kh.api.case(c).await.unwrap().body.to_string(),
        );
    }
    let inbox: String = read_inbox(&kh.api)
        .await
        .iter()
        .map(Value::to_string)
        .collect();
    clean("KH's inbox", &inbox);
    for (p, label) in [(&th, "TH"), (&kh, "KH")] {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(log.contains("message_id"), "{label} logged nothing useful");
        clean(&format!("{label}'s log"), &log);
    }
    th.kill().await;
    kh.kill().await;
    kh_files_clean(data.path());
}
