//! Batch submission, `POST /v1/messages/batch`, on real gateways: each
//! message judged and answered on its own as the single route would, the
//! accepted ones stored (once) and delivered exactly once, a case's
//! messages in order within one batch, whole-request refusals that store
//! nothing, resubmissions that change nothing, a store failure that
//! accepts nothing, and one audit record per message.

use std::collections::BTreeMap;

use homeward::app::submit::LOCAL_BATCH_MAX;
use homeward::config::Settings;
use homeward::gateway::RunningGateway;
use homeward::http::local::openapi_document;
use serde_json::{Value, json};

use crate::support::*;

mod refusals;

const OFFICER: &str = "officer-0042@msdhs.th";

/// TH alone (its KH peer never answers, so what is accepted stays
/// queued), with `tweak` applied to its settings.
struct Th {
    pki: Pki,
    data: tempfile::TempDir,
    _kh: Unreachable,
    gateway: RunningGateway,
}

impl Th {
    async fn start(tweak: impl FnOnce(&mut Settings)) -> Self {
        let pki = Pki::new();
        let data = tempfile::tempdir().expect("tempdir");
        let kh = Unreachable::new();
        let listeners = bind();
        let mut s = settings_for(&pki, "TH", data.path(), &listeners, &[("KH", kh.addr)]);
        tweak(&mut s);
        let gateway = start(s, listeners).await;
        Self {
            pki,
            data,
            _kh: kh,
            gateway,
        }
    }

    fn api(&self) -> Api {
        api(&self.pki, "TH", self.gateway.api_addr)
    }

    async fn outbox_rows(&self) -> i64 {
        outbox_rows(&database_url(self.data.path(), "TH")).await
    }
}

/// How many messages the node's outbox holds, read behind its back.
async fn outbox_rows(url: &str) -> i64 {
    let pool = any_pool(url).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(&pool)
        .await
        .expect("outbox count");
    pool.close().await;
    n
}

fn results(reply: &Reply) -> &Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["results"].as_array().expect("results")
}

/// Each result's (status, error code or "").
fn outcomes(reply: &Reply) -> Vec<(u64, String)> {
    results(reply)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["index"], i, "{r}");
            (
                r["status"].as_u64().expect("status"),
                r["error"]["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn id(m: &Value) -> String {
    m["message_id"].as_str().expect("message_id").to_string()
}

/// A referral.update that corrects `field` of `target`.
fn correction(case: &str, target: &str, pointer: &str) -> Value {
    envelope(
        "referral.update",
        "TH",
        "KH",
        case,
        Some(target),
        json!({
            "reason": "correction",
            "summary": "The shelter's city was recorded wrongly.",
            "corrections": [{"pointer": pointer, "value": "Synthetic Corrected City"}]
        }),
    )
}

/// An audit record as (result, case_ref, message_id, officer).
type Record = (String, Option<String>, Option<String>, Option<String>);

/// The message.submit records of an audit page, sorted.
fn submit_records(page: &Value) -> Vec<Record> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut records: Vec<_> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "message.submit")
        .map(|r| {
            (
                text(&r["result"]).expect("result"),
                text(&r["case_ref"]),
                text(&r["message_id"]),
                text(&r["officer"]),
            )
        })
        .collect();
    records.sort();
    records
}

#[test]
fn the_document_states_the_batch_limit() {
    let doc: Value = serde_json::from_str(openapi_document()).unwrap();
    let messages = &doc["components"]["schemas"]["MessageBatch"]["properties"]["messages"];
    assert_eq!(messages["maxItems"], LOCAL_BATCH_MAX);
    assert_eq!(messages["minItems"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_500_is_accepted_at_once_and_delivered_exactly_once() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let sent: Vec<Value> = (0..LOCAL_BATCH_MAX)
        .map(|n| referral("TH", "KH", &case_ref("TH", "KH", n + 1), n))
        .collect();
    let r = th.submit_batch(&sent, None).await.unwrap();
    let answers = results(&r);
    assert_eq!(answers.len(), LOCAL_BATCH_MAX);
    for (i, (a, m)) in answers.iter().zip(&sent).enumerate() {
        let mid = id(m);
        assert_eq!(
            a,
            &json!({"index": i, "status": 202, "message_id": mid, "case_ref": m["case_ref"],
                    "state": "queued", "status_url": format!("/v1/messages/{mid}")}),
        );
    }
    let metrics = th.with_token(OPERATOR_TOKEN).metrics_text().await.unwrap();
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l == format!("homeward_messages_submitted_total {LOCAL_BATCH_MAX}")),
        "{}",
        metrics.text
    );

    assert_eq!(drain(pair.th_worker()).await, LOCAL_BATCH_MAX);
    let inbox = read_inbox(&kh).await;
    assert_exactly_once_in_order(&inbox, &sent.iter().collect::<Vec<_>>());
    for m in [&sent[0], &sent[LOCAL_BATCH_MAX - 1]] {
        let status = th.message(&id(m)).await.unwrap().body;
        assert_eq!(status["state"], "delivered", "{status}");
    }
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_answers_each_message_alone_and_stores_only_the_accepted() {
    let th = Th::start(|s| s.local_api.max_body_bytes = 16 * 1024).await;
    let api = th.api();
    let valid = referral("TH", "KH", &case_ref("TH", "KH", 1), 1);
    let mut schema_invalid = referral("TH", "KH", &case_ref("TH", "KH", 2), 2);
    schema_invalid["payload"]["person"]["sex"] = json!("unknown-sex");
    let wrong_sender = referral("KH", "TH", &case_ref("TH", "KH", 3), 3);
    let no_agreement = referral("TH", "VN", &case_ref("TH", "VN", 4), 4);
    let mut same_id_other_content = referral("TH", "KH", &case_ref("TH", "KH", 1), 99);
    same_id_other_content["message_id"] = valid["message_id"].clone();
    // No message_id: the gateway gives it one.
    let mut unnamed = referral("TH", "KH", &case_ref("TH", "KH", 5), 5);
    unnamed.as_object_mut().unwrap().remove("message_id");
    let unknown_case = update("TH", "KH", &case_ref("TH", "KH", 6), 6);
    let mut oversized = referral("TH", "KH", &case_ref("TH", "KH", 7), 7);
    oversized["payload"]["padding"] = json!("x".repeat(20 * 1024));
    // The shipped KH–TH rule sends nothing the person did not consent to.
    let mut no_consent = referral("TH", "KH", &case_ref("TH", "KH", 8), 8);
    no_consent["payload"]["consent"]["to_share_information"] = json!(false);
    let batch = [
        valid.clone(),
        schema_invalid.clone(),
        wrong_sender.clone(),
        no_agreement.clone(),
        same_id_other_content,
        valid.clone(),
        json!(42),
        unnamed,
        unknown_case.clone(),
        oversized,
        no_consent.clone(),
    ];
    let r = api.submit_batch(&batch, Some(OFFICER)).await.unwrap();
    let expected: Vec<(u64, String)> = [
        (202, ""),
        (400, "schema_violation"),
        (422, "wrong_sender"),
        (403, "agreement_refused"),
        (409, "duplicate_message_id"),
        (202, ""),
        (400, "schema_violation"),
        (202, ""),
        (409, "case_state_conflict"),
        (413, "body_too_large"),
        (422, "consent_withheld"),
    ]
    .into_iter()
    .map(|(s, c)| (s, c.to_string()))
    .collect();
    assert_eq!(outcomes(&r), expected, "{}", r.body);
    let answers = results(&r);
    // Pointers point into the message, as the single route's do.
    assert_eq!(
        answers[1]["error"]["details"][0]["pointer"],
        "/payload/person/sex"
    );
    assert_eq!(answers[2]["error"]["details"][0]["pointer"], "/from");
    assert_eq!(answers[8]["error"]["details"][0]["pointer"], "/type");
    // The identical one is the first one, stored once.
    assert_eq!(answers[5], {
        let mut first = answers[0].clone();
        first["index"] = json!(5);
        first
    });
    let unnamed_id = answers[7]["message_id"].as_str().unwrap().to_string();
    assert_ne!(unnamed_id, id(&valid));
    // Each refusal is what the single route answers for that message.
    for (i, m) in [
        (1, &schema_invalid),
        (2, &wrong_sender),
        (3, &no_agreement),
        (8, &unknown_case),
        (10, &no_consent),
    ] {
        let single = api.submit(m).await.unwrap();
        assert_eq!(single.status, answers[i]["status"], "{}", single.body);
        assert_eq!(single.body["error"], answers[i]["error"], "message {i}");
    }

    assert_eq!(th.outbox_rows().await, 2, "exactly the accepted ones");
    for accepted in [id(&valid), unnamed_id.clone()] {
        assert_eq!(api.message(&accepted).await.unwrap().status, 200);
    }

    // One record per message with the officer: the two stored with their
    // messages, the resubmission, each refusal (with the case and message
    // it named, where those have their shape).
    let page = api
        .with_token(ADMIN_TOKEN)
        .get(&format!("/v1/audit?actor={OFFICER}&limit=1000"))
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    // (result, the message it names, if any), with the officer.
    let rec = |result: &str, m: Option<&Value>| -> Record {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let (case, message) = m.map_or((None, None), |m| {
            (text(&m["case_ref"]), text(&m["message_id"]))
        });
        (result.into(), case, message, Some(OFFICER.into()))
    };
    let unnamed = json!({"case_ref": case_ref("TH", "KH", 5), "message_id": unnamed_id});
    let mut expected = vec![
        rec("ok", Some(&valid)),
        rec("ok", Some(&valid)),
        rec("ok", Some(&unnamed)),
        rec("refused:400", Some(&schema_invalid)),
        rec("refused:422", Some(&wrong_sender)),
        rec("refused:403", Some(&no_agreement)),
        rec("refused:409", Some(&valid)),
        rec("refused:400", None),
        rec("refused:409", Some(&unknown_case)),
        rec("refused:413", None),
        rec("refused:422", Some(&no_consent)),
    ];
    expected.sort();
    assert_eq!(submit_records(&page.body), expected);
    th.gateway.stop().await;
}

/// Under an agreement that lets a referral without consent cross with its
/// minimal fields only, a batch's message is reduced as the single route
/// reduces it, and its answer says what was kept out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_message_without_consent_is_reduced_as_a_single_one_is() {
    let agreements = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(agreements_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "without = \"refuse\"\nminimal = []\n",
            "without = \"minimal\"\nminimal = [\"referral.notify:/consent/recorded_by\"]\n",
        );
        std::fs::write(agreements.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let dir = agreements.path().to_path_buf();
    let th = Th::start(move |s| s.agreements.dir = dir).await;
    let api = th.api();
    let without = |n| {
        let mut m = referral("TH", "KH", &case_ref("TH", "KH", n), n);
        m["payload"]["consent"]["to_share_information"] = json!(false);
        m
    };
    let r = api.submit_batch(&[without(1)], None).await.unwrap();
    let answer = &results(&r)[0];
    assert_eq!(answer["status"], 202, "{answer}");
    let single = api.submit(&without(2)).await.unwrap();
    assert_eq!(single.status, 202, "{}", single.body);
    let withheld = &single.body["withheld"];
    assert!(
        withheld.as_array().is_some_and(|w| !w.is_empty()),
        "{}",
        single.body
    );
    assert_eq!(&answer["withheld"], withheld);
    th.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cases_messages_in_one_batch_are_judged_and_delivered_in_order() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", 1);
    let notify = referral("TH", "KH", &case, 1);
    let placement = update("TH", "KH", &case, 1);
    // A correction of the referral sent in the same batch: admission finds
    // its target among the batch's earlier messages.
    let corrected = correction(&case, &id(&notify), "/placement/city");
    // An update whose referral is refused finds no case.
    let other = case_ref("TH", "KH", 2);
    let mut refused_notify = referral("TH", "KH", &other, 2);
    refused_notify["payload"]["person"]["sex"] = json!("unknown-sex");
    let orphan = update("TH", "KH", &other, 2);
    let batch = [
        notify.clone(),
        placement.clone(),
        corrected.clone(),
        refused_notify,
        orphan,
    ];
    let r = th.submit_batch(&batch, None).await.unwrap();
    let expected: Vec<(u64, String)> = vec![
        (202, String::new()),
        (202, String::new()),
        (202, String::new()),
        (400, "schema_violation".into()),
        (409, "case_state_conflict".into()),
    ];
    assert_eq!(outcomes(&r), expected, "{}", r.body);

    assert_eq!(drain(pair.th_worker()).await, 3);
    let inbox = read_inbox(&kh).await;
    assert_exactly_once_in_order(&inbox, &[&notify, &placement, &corrected]);
    let ids: Vec<&str> = inbox
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id(&notify), id(&placement), id(&corrected)]);
    let view = kh.case(&case).await.unwrap();
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(
        view.body["timeline"][0]["corrected_by"][0]["message_id"],
        id(&corrected).as_str(),
        "{}",
        view.body
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmitted_batch_gets_the_same_answers_and_stores_nothing_new() {
    let th = Th::start(|_| {}).await;
    let api = th.api();
    let accepted: Vec<Value> = (1..=3)
        .map(|n| referral("TH", "KH", &case_ref("TH", "KH", n), n))
        .collect();
    let mut invalid = referral("TH", "KH", &case_ref("TH", "KH", 4), 4);
    invalid["payload"]["person"]["sex"] = json!("unknown-sex");
    let orphan = update("TH", "KH", &case_ref("TH", "KH", 5), 5);
    let mut batch = accepted.clone();
    batch.extend([invalid, orphan, accepted[1].clone()]);

    let first = api.submit_batch(&batch, None).await.unwrap();
    let outcome = outcomes(&first);
    assert_eq!(
        outcome.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [202, 202, 202, 400, 409, 202]
    );
    assert_eq!(th.outbox_rows().await, 3);
    let again = api.submit_batch(&batch, None).await.unwrap();
    // The same answers, but where delivery has got to (the worker is
    // trying the unreachable peer meanwhile).
    let without_state = |reply: &Reply| {
        let mut body = reply.body.clone();
        for r in body["results"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("state");
        }
        body
    };
    assert_eq!(without_state(&again), without_state(&first));
    assert_eq!(th.outbox_rows().await, 3, "nothing new stored");
    // The single route sees the batch's messages as its own.
    let single = api.submit(&accepted[2]).await.unwrap();
    assert_eq!(single.status, 202);
    assert_eq!(single.body["message_id"], id(&accepted[2]).as_str());
    // A later batch that repeats one and adds one stores the new one only.
    let new = referral("TH", "KH", &case_ref("TH", "KH", 6), 6);
    let r = api
        .submit_batch(&[accepted[0].clone(), new.clone()], None)
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [(202, String::new()), (202, String::new())]);
    assert_eq!(th.outbox_rows().await, 4);

    // One record per message each time, none twice for the stored ones.
    let page = api
        .with_token(ADMIN_TOKEN)
        .get("/v1/audit?actor=TH-case-system&limit=1000")
        .await
        .unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (result, ..) in submit_records(&page.body) {
        *counts.entry(result).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [
        // 4 stored + 2 batches' resubmissions (1 + 4) + the single + 1.
        ("ok".to_string(), 4 + 1 + 4 + 1 + 1),
        ("refused:400".to_string(), 2),
        ("refused:409".to_string(), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, expected);
    th.gateway.stop().await;
}
