//! Batch submissions refused whole or by the rules every route follows:
//! a body that is not a batch, a store failure, the officer rule.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_batch_is_refused_whole_and_nothing_is_stored() {
    let th = Th::start(|s| {
        s.local_api.max_body_bytes = 16 * 1024;
        s.local_api.max_batch_bytes = Some(64 * 1024);
    })
    .await;
    let api = th.api();
    let post = |content_type: &'static str, body: Vec<u8>| {
        let request = api
            .request(Method::POST, "/v1/messages/batch")
            .header("content-type", content_type)
            .body(body);
        async move { Api::send(request).await.unwrap() }
    };
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();
    let one = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let too_many: Vec<Value> = (0..=LOCAL_BATCH_MAX).map(|_| json!({})).collect();
    let cases = [
        (
            json!({"messages": []}),
            "/messages",
            "minItems",
            "no message",
        ),
        (
            json!({ "messages": too_many }),
            "/messages",
            "maxItems",
            "501 messages; at most 500",
        ),
        (
            json!({"messages": {"0": one}}),
            "/messages",
            "type",
            "not an array",
        ),
        (
            json!({"messages": "[]"}),
            "/messages",
            "type",
            "not an array",
        ),
        (
            json!({"messages": null}),
            "/messages",
            "type",
            "not an array",
        ),
        (json!({}), "/messages", "required", "no `messages`"),
        (json!([one]), "", "type", "not an object"),
        (json!("messages"), "", "type", "not an object"),
        (
            json!({"messages": [one], "signatures": []}),
            "",
            "additionalProperties",
            "unknown field `signatures`",
        ),
    ];
    for (body, pointer, keyword, why) in cases {
        let r = post("application/json", json_body(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let error = &r.body["error"];
        assert_eq!(error["code"], "bad_batch", "{body}");
        assert_eq!(error["details"][0]["pointer"], pointer, "{body}");
        assert_eq!(error["details"][0]["keyword"], keyword, "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("1 to 500") && message.contains(why),
            "{message}"
        );
    }
    let r = post("application/json", b"{\"messages\": [{\"a\": }]}".to_vec()).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (400, &json!("malformed_json"))
    );
    let r = post("text/plain", json_body(json!({"messages": [one]}))).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (415, &json!("unsupported_media_type"))
    );
    // Over local_api.max_batch_bytes, though each message is small.
    let many: Vec<Value> = (0..150)
        .map(|n| referral("TH", "KH", &case_ref("TH", "KH", n + 10), n))
        .collect();
    let big = json_body(json!({ "messages": many }));
    assert!(big.len() > 64 * 1024);
    let r = post("application/json", big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "body_too_large");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&(64 * 1024).to_string()),
        "{}",
        r.body
    );
    // Nested deeper than a message may be: that message alone.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = format!(
        "{{\"messages\": [{deep}, {}]}}",
        serde_json::to_string(&one).unwrap()
    );
    let r = post("application/json", body.into_bytes()).await;
    assert_eq!(
        outcomes(&r),
        [(400, "malformed_json".to_string()), (202, String::new())]
    );
    assert_eq!(th.outbox_rows().await, 1);
    // Items that are not objects are refused each on its own, as the
    // single route refuses such a body.
    let r = post(
        "application/json",
        json_body(json!({"messages": [1, "x", null, [], true]})),
    )
    .await;
    for answer in results(&r) {
        assert_eq!(answer["status"], 400, "{answer}");
        assert_eq!(answer["error"]["code"], "schema_violation");
        assert_eq!(
            answer["error"]["message"],
            "a message must be a JSON object"
        );
    }
    assert_eq!(results(&r).len(), 5);
    assert_eq!(th.outbox_rows().await, 1, "nothing else stored");
    th.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_answers_503_and_accepts_nothing_of_the_batch() {
    let th = Th::start(|_| {}).await;
    let api = th.api();
    let batch: Vec<Value> = (1..=20)
        .map(|n| referral("TH", "KH", &case_ref("TH", "KH", n), n))
        .collect();
    // The bodies' table goes away behind the gateway's back: the outbox
    // rows of the batch are written, then its bodies fail.
    let url = database_url(th.data.path(), "TH");
    let pool = any_pool(&url).await;
    sqlx::query("ALTER TABLE outbox_body RENAME TO outbox_body_away")
        .execute(&pool)
        .await
        .expect("rename");
    let r = api.submit_batch(&batch, None).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "store_unavailable");
    sqlx::query("ALTER TABLE outbox_body_away RENAME TO outbox_body")
        .execute(&pool)
        .await
        .expect("rename back");
    pool.close().await;
    assert_eq!(th.outbox_rows().await, 0, "nothing of the batch stayed");
    // One record for the call, as for any 503: no message was answered.
    let page = api
        .with_token(ADMIN_TOKEN)
        .get("/v1/audit?actor=TH-case-system")
        .await
        .unwrap();
    assert_eq!(
        submit_records(&page.body),
        [("refused:503".to_string(), None, None, None)]
    );
    let r = api.submit_batch(&batch, None).await.unwrap();
    assert!(outcomes(&r).iter().all(|(s, _)| *s == 202), "{}", r.body);
    assert_eq!(th.outbox_rows().await, 20);
    th.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_an_agreement_requiring_officers_needs_on_behalf_of() {
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
    let dir = agreements.path().to_path_buf();
    let th = Th::start(move |s| s.agreements.dir = dir).await;
    let api = th.api();
    let batch: Vec<Value> = (1..=2)
        .map(|n| referral("TH", "KH", &case_ref("TH", "KH", n), n))
        .collect();
    let r = api.submit_batch(&batch, None).await.unwrap();
    assert_eq!(
        outcomes(&r),
        [
            (400, "officer_required".to_string()),
            (400, "officer_required".to_string())
        ]
    );
    assert_eq!(th.outbox_rows().await, 0);
    let r = api.submit_batch(&batch, Some(OFFICER)).await.unwrap();
    assert_eq!(outcomes(&r), [(202, String::new()), (202, String::new())]);
    // A malformed officer id refuses the whole request, as on every route.
    let bad = api
        .request(Method::POST, "/v1/messages/batch")
        .header("On-Behalf-Of", "not an id")
        .json(&json!({ "messages": batch }));
    let r = Api::send(bad).await.unwrap();
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (400, &json!("bad_officer"))
    );
    th.gateway.stop().await;
}
