//! `GET /openapi.json` stays true to the code: every route in
//! `http::local::rules()` (and the peer route) is documented, every documented
//! example validates against its schema, and real responses of a running
//! gateway validate too.

use crate::support::*;
use homeward::http::local::{openapi_document, rules};
use serde_json::{Value, json};

fn doc() -> Value {
    serde_json::from_str(openapi_document()).expect("openapi.json is JSON")
}

/// A validator for `#/components/schemas/<name>` (or an inline schema) with
/// the whole document as root, so `$ref`s resolve.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = doc.clone();
    root.as_object_mut().unwrap().insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    for (k, v) in schema.as_object().unwrap() {
        root[k] = v.clone();
    }
    jsonschema::draft202012::options()
        .build(&root)
        .expect("schema compiles")
}

fn check(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let v = validator(doc, schema);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} {}", e.instance_path(), e))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{instance}");
}

#[test]
fn every_route_is_documented_and_every_example_validates() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for rule in &rules() {
        let method = rule.method.as_str().to_ascii_lowercase();
        assert!(
            paths
                .get(rule.path.as_str())
                .and_then(|p| p.get(&method))
                .is_some(),
            "{} {} is not in openapi.json",
            rule.method,
            rule.path
        );
    }
    assert!(paths["/peer/v1/messages"]["post"].is_object());
    assert!(paths["/peer/v1/messages/batch"]["post"].is_object());
    assert!(paths["/peer/v1/reconcile"]["post"].is_object());
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let documented: usize = paths
        .values()
        .map(|p| {
            p.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .count()
        })
        .sum();
    assert_eq!(
        documented,
        rules().len() + homeward::http::peer::operations().len(),
        "openapi.json documents a route the code does not have"
    );
    let mut examples = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            for (code, r) in op["responses"].as_object().unwrap() {
                if let Some(content) = r["content"]["application/json"].as_object()
                    && let Some(example) = content.get("example")
                {
                    check(
                        &doc,
                        &content["schema"],
                        example,
                        &format!("{method} {path} {code} example"),
                    );
                    examples += 1;
                }
            }
        }
    }
    assert!(examples >= 15, "only {examples} examples");
    // The check itself can fail.
    let error = validator(&doc, &json!({"$ref": "#/components/schemas/Error"}));
    assert!(!error.is_valid(&json!({"error": {"code": 1}})));
}

fn response_schema(doc: &Value, path: &str, method: &str, code: &str) -> Value {
    doc["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"].clone()
}

#[tokio::test]
async fn live_responses_match_the_document() {
    let doc = doc();
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", 1);
    let msg = referral("TH", "KH", &case, 1);
    let id = msg["message_id"].as_str().unwrap().to_string();
    let r = th.submit(&msg).await.unwrap();
    check(
        &doc,
        &response_schema(&doc, "/v1/messages", "post", "202"),
        &r.body,
        "202 submit",
    );
    let status = step_one(pair.th_worker(), &th, &id).await;
    assert_eq!(status["state"], "delivered", "{status}");
    // Each live answer, by the client's method for its endpoint: what was
    // asked, the documented route and method, the reply.
    let live = [
        (
            format!("TH /v1/messages/{id}"),
            "/v1/messages/{id}",
            "get",
            th.message(&id).await,
        ),
        (
            format!("KH /v1/messages/{id}"),
            "/v1/messages/{id}",
            "get",
            kh.message(&id).await,
        ),
        (
            "KH /v1/inbox".into(),
            "/v1/inbox",
            "get",
            kh.inbox(None, None).await,
        ),
        (
            format!("TH /v1/cases/{case}"),
            "/v1/cases/{case_ref}",
            "get",
            th.case(&case).await,
        ),
        (
            format!("KH /v1/cases/{case}"),
            "/v1/cases/{case_ref}",
            "get",
            kh.case(&case).await,
        ),
        (
            "TH /v1/timers".into(),
            "/v1/timers",
            "get",
            th.timers(None).await,
        ),
        ("TH /v1/sla".into(), "/v1/sla", "get", th.sla().await),
        (
            "TH /v1/schemas".into(),
            "/v1/schemas",
            "get",
            th.schemas().await,
        ),
        (
            "TH /v1/schemas/referral.notify/1".into(),
            "/v1/schemas/{message_type}/{version}",
            "get",
            th.schema("referral.notify", 1).await,
        ),
        (
            "TH /v1/validate".into(),
            "/v1/validate",
            "post",
            th.validate(&msg).await,
        ),
        (
            "TH /v1/messages/batch".into(),
            "/v1/messages/batch",
            "post",
            th.submit_batch(&[msg.clone(), json!(1)], None).await,
        ),
        (
            "TH /v1/health".into(),
            "/v1/health",
            "get",
            th.health().await,
        ),
        (
            "TH /v1/dashboard".into(),
            "/v1/dashboard",
            "get",
            th.with_token(OPERATOR_TOKEN).dashboard().await,
        ),
        (
            "TH /v1/audit".into(),
            "/v1/audit",
            "get",
            th.with_token(ADMIN_TOKEN).audit(None).await,
        ),
        (
            format!("TH /v1/cases/{case}/evidence"),
            "/v1/cases/{case_ref}/evidence",
            "get",
            th.with_token(ADMIN_TOKEN)
                .get(&format!("/v1/cases/{case}/evidence"))
                .await,
        ),
    ];
    for (url, path, method, r) in live {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        check(
            &doc,
            &response_schema(&doc, path, method, "200"),
            &r.body,
            &url,
        );
    }
    // Refusals: each documented for its route, each in the error body.
    let refusals = [
        (
            "/v1/messages/{id}",
            "get",
            th.message("not-a-uuid").await,
            400,
        ),
        (
            "/v1/messages/{id}",
            "get",
            th.message("01936f3e-5b7a-7c2d-9a61-0000000000ff").await,
            404,
        ),
        (
            "/v1/outbox/{id}/retry",
            "post",
            th.with_token(ADMIN_TOKEN).outbox_retry(&id).await,
            409,
        ),
        ("/v1/audit", "get", th.audit(None).await, 403),
        (
            "/v1/messages/batch",
            "post",
            th.submit_batch(&[], None).await,
            400,
        ),
        (
            "/v1/cases/{case_ref}/evidence",
            "get",
            th.with_token(ADMIN_TOKEN)
                .get("/v1/cases/TH-KH-2026-999999/evidence")
                .await,
            404,
        ),
        (
            "/v1/timers",
            "get",
            th.get("/v1/timers?peer=THX").await,
            400,
        ),
    ];
    for (path, method, r, status) in refusals {
        let r = r.unwrap();
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        check(
            &doc,
            &response_schema(&doc, path, method, &status.to_string()),
            &r.body,
            &format!("{method} {path} {status}"),
        );
    }
    let r = th.message("not-a-uuid").await.unwrap();
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/Error"}),
        &r.body,
        "error body",
    );
    let served = th.openapi().await.unwrap();
    assert_eq!(served.body, doc);
    pair.stop().await;
}

/// Every `$ref` points at something in the document.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r);
            }
            o.values().for_each(|c| refs(c, out));
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

#[test]
fn the_document_states_what_the_guard_and_the_peer_port_enforce() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "only {} $refs", all.len());
    for r in &all {
        let pointer = r.strip_prefix('#').expect("only local $refs");
        assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
    }
    for rule in rules() {
        let op = &doc["paths"][rule.path.as_str()][rule.method.as_str().to_ascii_lowercase()];
        let security = op["security"].as_array().expect("security stated");
        if rule.roles.is_empty() {
            assert_eq!(security, &vec![json!({})], "{} is public", rule.path);
            continue;
        }
        assert_eq!(
            security.len(),
            2,
            "{}: bearer or client certificate",
            rule.path
        );
        for code in ["401", "403", "429"] {
            assert!(
                op["responses"][code].is_object(),
                "{} lacks {code}",
                rule.path
            );
        }
        for role in rule.roles {
            assert!(
                op["description"].as_str().unwrap().contains(role.as_str()),
                "{} does not name role {}",
                rule.path,
                role.as_str()
            );
        }
    }
    for path in [
        homeward::protocol::MESSAGES_PATH,
        homeward::protocol::BATCH_PATH,
    ] {
        let item = &doc["paths"][path];
        assert_eq!(
            item["servers"][0]["url"], "https://127.0.0.1:7101",
            "{path}"
        );
        assert_eq!(item["post"]["security"], json!([{"peerCert": []}]));
    }
    assert_eq!(
        doc["components"]["schemas"]["BatchBody"]["properties"]["messages"]["maxItems"],
        json!(homeward::protocol::BATCH_MAX)
    );
    // Each payload schema is in the document, and an envelope of the wrong
    // payload for its type is refused by the document as by the gateway.
    let envelope = json!({"$ref": "#/components/schemas/Envelope"});
    let mut msg = referral("TH", "KH", &case_ref("TH", "KH", 7), 7);
    check(&doc, &envelope, &msg, "a valid referral");
    msg["payload"]["person"]["sex"] = json!("unknown-value");
    assert!(!validator(&doc, &envelope).is_valid(&msg));
}
