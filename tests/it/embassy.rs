//! Embassies see their own nationals' cases only (404 for the others, not
//! 403), and a case is found by its reference, the receiver's case number
//! or a document number, through keyed hashes: the database files never
//! hold a searchable clear number. Every search is audited.

use homeward::config::TokenSettings;
use homeward::domain::access::{Role, hash_token};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

const KH_EMBASSY: &str = "embassy-kh-token";
const VN_EMBASSY: &str = "embassy-vn-token";
const PASSPORT: &str = "N 7700-001";

/// KH with a TH peer and an unreachable VN; two embassy tokens on KH.
struct Node {
    pki: Pki,
    data: tempfile::TempDir,
    kh: homeward::gateway::RunningGateway,
    th: homeward::gateway::RunningGateway,
    th_worker: std::sync::Arc<homeward::app::delivery::Worker>,
    kh_worker: std::sync::Arc<homeward::app::delivery::Worker>,
    _vn: Unreachable,
}

fn embassy(name: &str, token: &str, serves: &str) -> TokenSettings {
    TokenSettings {
        name: name.into(),
        role: Role::Embassy,
        sha256: hash_token(token),
        serves: Some(serves.into()),
    }
}

fn with_passport(mut m: Value, number: &str) -> Value {
    m["payload"]["person"]["identity_documents"] =
        json!([{"type": "passport", "number": number, "issuer": "KH"}]);
    m
}

impl Node {
    async fn start() -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().unwrap();
        let vn = Unreachable::new();
        let (kh_l, th_l) = (bind(), bind());
        let mut kh_settings = settings_for(
            &pki,
            "KH",
            data.path(),
            &kh_l,
            &[("TH", th_l.peer_addr()), ("VN", vn.addr)],
        );
        kh_settings
            .tokens
            .push(embassy("kh-mission", KH_EMBASSY, "KH"));
        kh_settings
            .tokens
            .push(embassy("vn-mission", VN_EMBASSY, "VN"));
        let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
        let (kh, kh_worker) = start_manual(kh_settings, kh_l).await;
        let (th, th_worker) = start_manual(th_settings, th_l).await;
        Self {
            pki,
            data,
            kh,
            th,
            th_worker,
            kh_worker,
            _vn: vn,
        }
    }

    fn kh(&self, token: &str) -> Api {
        api(&self.pki, "KH", self.kh.api_addr).with_token(token)
    }

    async fn search(&self, token: &str, body: Value) -> (u16, Value) {
        let r = Api::send(
            self.kh(token)
                .request(Method::POST, "/v1/cases/search")
                .json(&body),
        )
        .await
        .unwrap();
        (r.status, r.body)
    }

    /// The case references a search found.
    async fn found(&self, token: &str, body: Value) -> Vec<String> {
        let (status, page) = self.search(token, body).await;
        assert_eq!(status, 200, "{page}");
        page["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["case_ref"].as_str().unwrap().to_string())
            .collect()
    }
}

/// TH-KH-1 (a Cambodian found in Thailand, passport PASSPORT, acknowledged
/// by KH as KH-CASE-77), TH-KH-2 (another passport) and KH-VN-1 (a
/// Vietnamese found in Cambodia, the same passport number: numbers are not
/// unique across countries).
async fn seeded() -> Node {
    let n = Node::start().await;
    let th = api(&n.pki, "TH", n.th.api_addr);
    let kh = n.kh(TOKEN);
    let first = with_passport(referral("TH", "KH", &case_ref("TH", "KH", 1), 1), PASSPORT);
    let second = with_passport(
        referral("TH", "KH", &case_ref("TH", "KH", 2), 2),
        "P-0000002",
    );
    for m in [&first, &second] {
        assert_eq!(th.submit(m).await.unwrap().status, 202);
    }
    assert_eq!(step(&n.th_worker).await, 2);
    let mut ack = acknowledge(
        "KH",
        "TH",
        &case_ref("TH", "KH", 1),
        first["message_id"].as_str().unwrap(),
    );
    ack["payload"]["receiver_case_number"] = json!("KH-CASE-77");
    assert_eq!(kh.submit(&ack).await.unwrap().status, 202);
    assert_eq!(step(&n.kh_worker).await, 1);
    let vn = with_passport(
        referral("KH", "VN", &case_ref("KH", "VN", 1), 3),
        "n7700001",
    );
    let r = kh.submit(&vn).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embassy_sees_its_own_nationals_cases_and_not_even_the_existence_of_others() {
    let n = seeded().await;
    let (kh_case, vn_case) = (case_ref("TH", "KH", 1), case_ref("KH", "VN", 1));
    let kh_mission = n.kh(KH_EMBASSY);
    let vn_mission = n.kh(VN_EMBASSY);
    assert_eq!(kh_mission.case(&kh_case).await.unwrap().status, 200);
    assert_eq!(vn_mission.case(&vn_case).await.unwrap().status, 200);
    // Another country's national's case answers exactly as no case at all.
    let hidden = kh_mission.case(&vn_case).await.unwrap();
    let absent = kh_mission.case("TH-KH-2026-999999").await.unwrap();
    assert_eq!((hidden.status, absent.status), (404, 404));
    assert_eq!(
        hidden.body["error"]["code"], absent.body["error"]["code"],
        "{}",
        hidden.body
    );
    assert_eq!(vn_mission.case(&kh_case).await.unwrap().status, 404);
    // The caseworker sees both.
    assert_eq!(n.kh(TOKEN).case(&vn_case).await.unwrap().status, 200);
    n.th.stop().await;
    n.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_search_form_finds_its_case_and_only_it() {
    let n = seeded().await;
    let (one, two, vn) = (
        case_ref("TH", "KH", 1),
        case_ref("TH", "KH", 2),
        case_ref("KH", "VN", 1),
    );
    // By reference.
    assert_eq!(
        n.found(TOKEN, json!({"case_ref": one})).await,
        vec![one.clone()]
    );
    assert!(
        n.found(TOKEN, json!({"case_ref": "TH-KH-2026-999999"}))
            .await
            .is_empty()
    );
    // By the receiver's case number (KH's own acknowledgement).
    assert_eq!(
        n.found(TOKEN, json!({"receiver_case_number": "KH-CASE-77"}))
            .await,
        vec![one.clone()]
    );
    assert!(
        n.found(TOKEN, json!({"receiver_case_number": "KH-CASE-78"}))
            .await
            .is_empty()
    );
    // By passport, however it is spaced or cased.
    let passport = |number: &str| json!({"document": {"type": "passport", "number": number}});
    // (in reference order)
    assert_eq!(
        n.found(TOKEN, passport(PASSPORT)).await,
        [vn.clone(), one.clone()]
    );
    assert_eq!(
        n.found(TOKEN, passport("n7700001")).await,
        [vn.clone(), one.clone()]
    );
    assert_eq!(
        n.found(TOKEN, passport("P0000002")).await,
        vec![two.clone()]
    );
    // Another kind of document with the same number is another document.
    assert!(
        n.found(
            TOKEN,
            json!({"document": {"type": "national_id", "number": PASSPORT}})
        )
        .await
        .is_empty()
    );
    // An embassy finds only its own nationals.
    assert_eq!(
        n.found(KH_EMBASSY, passport(PASSPORT)).await,
        vec![one.clone()]
    );
    assert_eq!(
        n.found(VN_EMBASSY, passport(PASSPORT)).await,
        vec![vn.clone()]
    );
    assert!(
        n.found(KH_EMBASSY, json!({"case_ref": vn}))
            .await
            .is_empty()
    );
    // Pages.
    let (status, page) = n
        .search(
            TOKEN,
            json!({"document": {"type": "passport", "number": PASSPORT}, "limit": 1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["cases"][0]["case_ref"], vn.as_str());
    assert_eq!(page["next"], vn.as_str());
    let (_, page) = n
        .search(
            TOKEN,
            json!({"document": {"type": "passport", "number": PASSPORT}, "limit": 1, "after": vn}),
        )
        .await;
    assert_eq!(page["cases"][0]["case_ref"], one.as_str(), "{page}");
    assert_eq!(page["next"], Value::Null);
    // The summary carries no person.
    let (_, page) = n.search(TOKEN, passport(PASSPORT)).await;
    let text = page.to_string();
    assert!(
        !text.contains("Test Person") && !text.contains("7700"),
        "{text}"
    );
    assert_eq!(page["cases"][1]["state"], "acknowledged", "{page}");

    // Audited, each case found named.
    let audit = n.kh(ADMIN_TOKEN).audit(Some(&one)).await.unwrap().body;
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "case.search" && r["actor"] == "kh-mission"),
        "{audit}"
    );
    n.th.stop().await;
    n.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_searched_document_number_is_nowhere_in_clear_in_the_database_files() {
    let n = seeded().await;
    let found = n
        .found(
            KH_EMBASSY,
            json!({"document": {"type": "passport", "number": PASSPORT}}),
        )
        .await;
    assert_eq!(found.len(), 1);
    if std::env::var("HOMEWARD_TEST_STORE").as_deref() != Ok("postgres") {
        let mut scanned = 0;
        for entry in std::fs::read_dir(n.data.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("kh") || !name.contains(".db") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            scanned += 1;
            for needle in [
                "N7700001",
                "N 7700-001",
                "7700-001",
                "7700001",
                "KH-CASE-77",
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "`{needle}` in clear in {name}"
                );
            }
        }
        assert!(scanned >= 1, "KH's database files were scanned");
    }
    n.th.stop().await;
    n.kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_searches_are_refused_with_the_place_and_roles_are_checked() {
    let n = seeded().await;
    for (body, pointer) in [
        (json!({}), ""),
        (json!([]), ""),
        (json!("passport"), ""),
        (
            json!({"case_ref": "a", "document": {"type": "passport", "number": "1"}}),
            "",
        ),
        (
            json!({"document": {"type": "birth_certificate", "number": "1"}}),
            "/document/type",
        ),
        (
            json!({"document": {"type": "passport", "number": ""}}),
            "/document/number",
        ),
        (json!({"document": {"type": "passport"}}), ""),
        (
            json!({"receiver_case_number": "x".repeat(129)}),
            "/receiver_case_number",
        ),
        (
            json!({"case_ref": "TH-KH-2026-000001", "limit": 0}),
            "/limit",
        ),
        (
            json!({"case_ref": "TH-KH-2026-000001", "limit": 101}),
            "/limit",
        ),
        (
            json!({"case_ref": "TH-KH-2026-000001", "limit": "5"}),
            "/limit",
        ),
        (
            json!({"case_ref": "TH-KH-2026-000001", "after": 3}),
            "/after",
        ),
        (
            json!({"case_ref": "TH-KH-2026-000001", "name": "Test Person 1"}),
            "",
        ),
    ] {
        let (status, e) = n.search(TOKEN, body.clone()).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["code"], "bad_search", "{body}: {e}");
        assert_eq!(e["error"]["details"][0]["pointer"], pointer, "{body}: {e}");
    }
    let raw = Api::send(
        n.kh(TOKEN)
            .request(Method::POST, "/v1/cases/search")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 400, "{}", raw.body);
    let text = Api::send(
        n.kh(TOKEN)
            .request(Method::POST, "/v1/cases/search")
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await
    .unwrap();
    assert_eq!(text.status, 415);
    // Operators and integrators do not search cases.
    for token in [OPERATOR_TOKEN, ADMIN_TOKEN] {
        let (status, _) = n
            .search(token, json!({"case_ref": "TH-KH-2026-000001"}))
            .await;
        assert_eq!(status, 403, "{token}");
    }
    n.th.stop().await;
    n.kh.stop().await;
}

#[test]
fn an_embassy_without_a_nationality_or_a_caseworker_with_one_is_refused_at_start() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let base = settings(
        &pki,
        "KH",
        data.path(),
        (free_addr(), free_addr()),
        &[("TH", free_addr())],
    );
    for (token, key, says) in [
        (
            TokenSettings {
                serves: None,
                ..embassy("m", "t", "KH")
            },
            "tokens[4].serves",
            "whose nationals",
        ),
        (embassy("m", "t", "XX"), "tokens[4].serves", "`XX`"),
        (
            TokenSettings {
                role: Role::Caseworker,
                ..embassy("m", "t", "KH")
            },
            "tokens[4].serves",
            "only an embassy",
        ),
    ] {
        let mut s = base.clone();
        s.tokens.push(token);
        let path = data.path().join("kh.toml");
        std::fs::write(&path, toml::to_string(&s).unwrap()).unwrap();
        let e = homeward::config::Settings::load(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(says), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mission_sends_what_its_agreement_lets_it_and_both_timelines_say_so() {
    let n = seeded().await;
    let case = case_ref("TH", "KH", 1);
    let th = api(&n.pki, "TH", n.th.api_addr);
    // Thailand asks for family tracing; Cambodia's mission answers it.
    let request = envelope(
        "family-tracing.request",
        "TH",
        "KH",
        &case,
        None,
        example_payload("family-tracing.request", |_| true),
    );
    assert_eq!(th.submit(&request).await.unwrap().status, 202);
    assert_eq!(step(&n.th_worker).await, 1);
    let mission = n.kh(KH_EMBASSY);
    let result = envelope(
        "family-tracing.result",
        "KH",
        "TH",
        &case,
        request["message_id"].as_str(),
        example_payload("family-tracing.result", |_| true),
    );
    let r = mission.submit(&result).await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    // (KH's referral to the unreachable VN is attempted too)
    step(&n.kh_worker).await;
    let id = result["message_id"].as_str().unwrap();
    for (side, view) in [
        ("KH", n.kh(TOKEN).case(&case).await.unwrap().body),
        ("TH", th.case(&case).await.unwrap().body),
    ] {
        let entry = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message_id"] == id)
            .unwrap_or_else(|| panic!("{side}: {view}"));
        assert_eq!(entry["from_mission"], true, "{side}: {entry}");
        let arrived = if side == "KH" {
            "delivered"
        } else {
            "received"
        };
        assert_eq!(entry["state"], arrived, "{side}: {entry}");
        // The others are not marked.
        let others = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["message_id"] != id);
        assert!(
            others.clone().all(|m| m.get("from_mission").is_none()),
            "{side}: {view}"
        );
    }
    // Not a type the agreement lets a mission send.
    let r = mission.submit(&update("KH", "TH", &case, 5)).await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("not_allowed_for_mission")),
        "{}",
        r.body
    );
    // Not a case of its nationals: as if it did not exist.
    let other = case_ref("KH", "VN", 1);
    let r = mission
        .submit(&update("KH", "VN", &other, 6))
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    // Nobody else may say a message is the mission's.
    let mut claimed = update("KH", "TH", &case, 7);
    claimed["sent_by"] = json!("mission");
    let r = n.kh(TOKEN).submit(&claimed).await.unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("sent_by_reserved")),
        "{}",
        r.body
    );
    // A peer's mission message of a type the agreement does not name is refused.
    let client = peer_client(&n.pki, "KH", Some(&n.pki.identity(&n.pki.paths("TH"))));
    let mut forged = update("TH", "KH", &case, 8);
    forged["sent_by"] = json!("mission");
    let (status, body) = peer_post_to(&client, &peer_url(n.kh.peer_addr), &forged).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_allowed_for_mission")),
        "{body}"
    );
    n.th.stop().await;
    n.kh.stop().await;
}
