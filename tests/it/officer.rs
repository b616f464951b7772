//! Who acted: the officer a case system names in `On-Behalf-Of` is kept in
//! the audit record of every audited call (refusals too) and in its chain
//! hash, `GET /v1/audit?actor=` finds the records of an officer or of a
//! calling system, a malformed id is refused before anything happens, and
//! an agreement can require an officer behind every submission.

use homeward::domain::officer;
use homeward::gateway::RunningGateway;
use homeward::http::local::openapi_document;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::support::*;

const OFFICER: &str = "officer-0042@mosvy.kh";

/// A TH gateway whose KH peer never answers: what is submitted stays queued.
async fn th_gateway(
    pki: &Pki,
    data: &std::path::Path,
    kh: &Unreachable,
    agreements: Option<&std::path::Path>,
) -> (RunningGateway, homeward::config::Settings) {
    let th_l = bind();
    let mut settings = settings_for(pki, "TH", data, &th_l, &[("KH", kh.addr)]);
    if let Some(dir) = agreements {
        settings.agreements.dir = dir.to_path_buf();
    }
    (start(settings.clone(), th_l).await, settings)
}

/// `request` on behalf of `officer` (raw bytes: the malformed ones too).
fn on_behalf(request: reqwest::RequestBuilder, officer: &[u8]) -> reqwest::RequestBuilder {
    request.header(
        "On-Behalf-Of",
        HeaderValue::from_bytes(officer).expect("a value the client can send"),
    )
}

async fn submit_as(api: &Api, msg: &Value, officer: Option<&[u8]>) -> Reply {
    let request = api.request(Method::POST, "/v1/messages").json(msg);
    let request = match officer {
        Some(o) => on_behalf(request, o),
        None => request,
    };
    Api::send(request).await.unwrap()
}

/// The records of one audit page as (actor, action, result, officer).
fn summary(page: &Value) -> Vec<(String, String, String, Option<String>)> {
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
                r["officer"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn record(
    actor: &str,
    action: &str,
    result: &str,
    officer: Option<&str>,
) -> (String, String, String, Option<String>) {
    (
        actor.into(),
        action.into(),
        result.into(),
        officer.map(str::to_string),
    )
}

#[tokio::test]
async fn officers_are_audited_found_by_actor_and_chained() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh = Unreachable::new();
    let (th, settings) = th_gateway(&pki, data.path(), &kh, None).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let admin = th_api.with_token(ADMIN_TOKEN);
    let case = case_ref("TH", "KH", 1);
    let msg = referral("TH", "KH", &case, 1);
    let id = msg["message_id"].as_str().unwrap();

    let r = submit_as(&th_api, &msg, Some(OFFICER.as_bytes())).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // The same submission again (a retry) is audited by the guard, with
    // the officer of the retry.
    let r = submit_as(&th_api, &msg, Some(b"officer-7")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let read = on_behalf(
        th_api.request(Method::GET, &format!("/v1/cases/{case}")),
        OFFICER.as_bytes(),
    );
    assert_eq!(Api::send(read).await.unwrap().status, 200);
    // A longest id is an id; a read without one names none.
    let longest = "x".repeat(officer::MAX_LEN);
    let read = on_behalf(
        th_api.request(Method::GET, &format!("/v1/messages/{id}")),
        longest.as_bytes(),
    );
    assert_eq!(Api::send(read).await.unwrap().status, 200);
    assert_eq!(th_api.case(&case).await.unwrap().status, 200);
    // A refusal keeps the officer too: the operator may not re-queue (a
    // record of no case: the guard refused before the message was read).
    let retry = on_behalf(
        th_api
            .with_token(OPERATOR_TOKEN)
            .request(Method::POST, &format!("/v1/outbox/{id}/retry")),
        OFFICER.as_bytes(),
    );
    assert_eq!(Api::send(retry).await.unwrap().status, 403);

    let log = admin.audit(Some(&case)).await.unwrap();
    assert_eq!(log.status, 200, "{}", log.body);
    assert_eq!(
        summary(&log.body),
        [
            record("TH-case-system", "message.submit", "ok", Some(OFFICER)),
            record("TH-case-system", "message.submit", "ok", Some("officer-7")),
            record("TH-case-system", "case.read", "ok", Some(OFFICER)),
            record("TH-case-system", "message.read", "ok", Some(&longest)),
            record("TH-case-system", "case.read", "ok", None),
        ]
    );

    // actor= by officer: the officer's records, whoever called.
    let by_officer = admin
        .get(&format!("/v1/audit?actor={}", urlencode(OFFICER)))
        .await
        .unwrap();
    assert_eq!(by_officer.status, 200, "{}", by_officer.body);
    assert_eq!(
        summary(&by_officer.body),
        [
            record("TH-case-system", "message.submit", "ok", Some(OFFICER)),
            record("TH-case-system", "case.read", "ok", Some(OFFICER)),
            record("TH-operator", "message.retry", "refused:403", Some(OFFICER)),
        ]
    );
    // actor= by principal: the calling system's records, with or without
    // an officer; and with case_ref= too.
    let by_system = admin
        .get(&format!("/v1/audit?actor=TH-case-system&case_ref={case}"))
        .await
        .unwrap();
    assert_eq!(summary(&by_system.body).len(), 5, "{}", by_system.body);
    let operator = admin.get("/v1/audit?actor=TH-operator").await.unwrap();
    assert_eq!(
        summary(&operator.body),
        [record(
            "TH-operator",
            "message.retry",
            "refused:403",
            Some(OFFICER)
        )]
    );
    // Exact match only, and no match is an empty page.
    for nobody in ["officer-0042", "OFFICER-0042@MOSVY.KH", "nobody"] {
        let page = admin
            .get(&format!("/v1/audit?actor={}", urlencode(nobody)))
            .await
            .unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.body["records"], Value::Array(vec![]), "{nobody}");
        assert_eq!(page.body["next_cursor"], Value::Null);
    }
    th.stop().await;

    // The chain, with and without officers in it, verifies offline.
    let config = data.path().join("th-officer.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("intact"), "{text}");
}

/// Percent-encodes a query value (the ids here are ASCII).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn malformed_officer_ids_are_refused_and_nothing_is_stored() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh = Unreachable::new();
    let (th, _) = th_gateway(&pki, data.path(), &kh, None).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let admin = th_api.with_token(ADMIN_TOKEN);
    let too_long = "x".repeat(officer::MAX_LEN + 1);
    let bad: [(&str, &[u8]); 6] = [
        ("129 characters", too_long.as_bytes()),
        ("empty", b""),
        ("a space", b"Test Officer"),
        ("non-ASCII", "សុខ-17".as_bytes()),
        ("a control character", b"officer\t17"),
        ("a character outside the set", b"officer,17"),
    ];
    for (i, (what, value)) in bad.iter().enumerate() {
        let case = case_ref("TH", "KH", 10 + i);
        let msg = referral("TH", "KH", &case, 10 + i);
        let r = submit_as(&th_api, &msg, Some(value)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "bad_officer", "{what}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("On-Behalf-Of"), "{what}: {message}");
        assert_eq!(
            r.body["error"]["details"][0]["message"],
            officer::RULE,
            "{what}"
        );
        assert!(!message.contains("Srey"), "the value is not echoed");
        let id = msg["message_id"].as_str().unwrap();
        assert_eq!(th_api.message(id).await.unwrap().status, 404, "{what}");
        // A read with it is refused the same way.
        let read = on_behalf(
            th_api.request(Method::GET, &format!("/v1/cases/{case}")),
            value,
        );
        let read = Api::send(read).await.unwrap();
        assert_eq!(read.body["error"]["code"], "bad_officer", "{what}");
        // Audited as a refusal, the malformed id not kept.
        let log = admin.audit(Some(&case)).await.unwrap().body;
        assert_eq!(
            summary(&log),
            [record("TH-case-system", "case.read", "refused:400", None)],
            "{what}"
        );
    }
    // Public routes take the header too, and refuse a malformed one.
    let health = on_behalf(th_api.request(Method::GET, "/v1/health"), b"two words");
    assert_eq!(
        Api::send(health).await.unwrap().body["error"]["code"],
        "bad_officer"
    );
    // Two officers for one call: which one acted? Refused.
    let twice = on_behalf(
        on_behalf(th_api.request(Method::GET, "/v1/health"), b"officer-1"),
        b"officer-2",
    );
    assert_eq!(Api::send(twice).await.unwrap().status, 400);

    let all = admin.get("/v1/audit?limit=1000").await.unwrap().body;
    let records = all["records"].as_array().unwrap();
    assert!(
        records.iter().all(|r| r["action"] == "audit.read"
            || r["result"] == "refused:400"
            || (r["action"] == "message.read" && r["result"] == "refused:404")),
        "nothing done with a malformed id: {all}"
    );
    assert!(
        records.iter().all(|r| r["officer"].is_null()),
        "no malformed id kept: {all}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["result"] == "refused:400")
            .count(),
        2 * bad.len()
    );
    th.stop().await;
}

#[tokio::test]
async fn an_agreement_can_require_the_officer() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let agreements = tempfile::tempdir().unwrap();
    for name in ["kh-th.toml", "kh-vn.toml", "kh-my.toml"] {
        let text = std::fs::read_to_string(agreements_dir().join(name)).unwrap();
        let text = if name == "kh-th.toml" {
            format!("require_officer = true\n{text}")
        } else {
            text
        };
        std::fs::write(agreements.path().join(name), text).unwrap();
    }
    let kh = Unreachable::new();
    let (th, _) = th_gateway(&pki, data.path(), &kh, Some(agreements.path())).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let case = case_ref("TH", "KH", 30);
    let msg = referral("TH", "KH", &case, 30);
    let id = msg["message_id"].as_str().unwrap();

    let r = submit_as(&th_api, &msg, None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "officer_required");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("kh-th") && message.contains("On-Behalf-Of"),
        "{message}"
    );
    assert_eq!(r.body["error"]["details"][0]["keyword"], "require_officer");
    assert_eq!(th_api.message(id).await.unwrap().status, 404);

    let r = submit_as(&th_api, &msg, Some(OFFICER.as_bytes())).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // The refused submission (a record of no case: it was never admitted),
    // the test's look for it, the accepted one with its officer.
    let log = th_api
        .with_token(ADMIN_TOKEN)
        .get("/v1/audit?actor=TH-case-system")
        .await
        .unwrap()
        .body;
    assert_eq!(
        summary(&log),
        [
            record("TH-case-system", "message.submit", "refused:400", None),
            record("TH-case-system", "message.read", "refused:404", None),
            record("TH-case-system", "message.submit", "ok", Some(OFFICER)),
        ]
    );
    th.stop().await;
}

/// The document says what the guard does: every local route takes the
/// header, with the rule's pattern, and documents its 400.
#[test]
fn every_local_route_documents_on_behalf_of() {
    let doc: Value = serde_json::from_str(openapi_document()).unwrap();
    let mut routes = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/peer/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let Some(params) = op.get("parameters").and_then(Value::as_array) else {
                panic!("{method} {path} has no parameters");
            };
            let header = params
                .iter()
                .find(|p| p["name"] == "On-Behalf-Of")
                .unwrap_or_else(|| panic!("{method} {path}: no On-Behalf-Of"));
            assert_eq!(header["in"], "header");
            assert_eq!(header["schema"]["pattern"], officer::PATTERN);
            assert_eq!(header["schema"]["maxLength"], officer::MAX_LEN);
            let bad = op["responses"]["400"]["description"].as_str().unwrap();
            assert!(bad.contains("bad_officer"), "{method} {path}: {bad}");
            routes += 1;
        }
    }
    assert!(routes >= 15, "{routes}");
    let record = &doc["components"]["schemas"]["AuditRecord"]["properties"]["officer"];
    assert_eq!(record["pattern"], officer::PATTERN, "{record}");
    let audit = &doc["paths"]["/v1/audit"]["get"]["parameters"];
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "actor"),
        "{audit}"
    );
    let submit = doc["paths"]["/v1/messages"]["post"]["responses"]["400"]["description"]
        .as_str()
        .unwrap();
    assert!(submit.contains("officer_required"), "{submit}");
}
