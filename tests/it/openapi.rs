//! `GET /openapi.json` stays true to the code: every route in
//! `http::local::rules()` (and the peer route) is documented, every documented
//! example validates against its schema, and real responses of a running
//! gateway validate too.

use crate::support::*;
use homeward::http::local::{OPENAPI, rules};
use serde_json::{Value, json};

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
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
            paths.get(rule.path).and_then(|p| p.get(&method)).is_some(),
            "{} {} is not in openapi.json",
            rule.method,
            rule.path
        );
    }
    assert!(paths["/peer/v1/messages"]["post"].is_object());
    assert!(paths["/peer/v1/messages/batch"]["post"].is_object());
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        rules().len() + 2,
        "openapi.json documents a route the code does not have"
    );
    let mut examples = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
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
    let pair = Pair::start().await;
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
    th.wait_final(&id, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    let live = [
        (&th, format!("/v1/messages/{id}"), "/v1/messages/{id}"),
        (&kh, format!("/v1/messages/{id}"), "/v1/messages/{id}"),
        (&kh, "/v1/inbox".to_string(), "/v1/inbox"),
        (&th, format!("/v1/cases/{case}"), "/v1/cases/{case_ref}"),
        (&kh, format!("/v1/cases/{case}"), "/v1/cases/{case_ref}"),
        (&th, "/v1/timers".to_string(), "/v1/timers"),
        (&th, "/v1/sla".to_string(), "/v1/sla"),
        (&th, "/v1/schemas".to_string(), "/v1/schemas"),
        (&th, "/v1/health".to_string(), "/v1/health"),
    ];
    for (api, url, path) in live {
        let r = api.get(&url).await.unwrap();
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        check(
            &doc,
            &response_schema(&doc, path, "get", "200"),
            &r.body,
            &url,
        );
    }
    let r = th.get("/v1/messages/not-a-uuid").await.unwrap();
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/Error"}),
        &r.body,
        "error body",
    );
    let served = th.get("/openapi.json").await.unwrap();
    assert_eq!(served.body, doc);
    pair.stop().await;
}
