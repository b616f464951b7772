//! Synthetic messages: envelopes of every kind the tests send, payloads
//! taken from the published examples, the check that a receiver got a set
//! of messages exactly once and in order, and synthetic cases taken from
//! referral to handover between two gateways. Nothing here names a real
//! person.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::Api;

/// A synthetic referral payload; nothing here names a real person.
pub fn referral_payload(n: usize) -> Value {
    json!({
        "person": {
            "name_native": format!("តេស្ត {n}"),
            "name_latin": format!("Test Person {n}"),
            "sex": if n.is_multiple_of(2) { "female" } else { "male" },
            "estimated_age": 20 + (n % 30),
            "presumed_minor": false,
            "nationality_claimed": "KH",
            "nationality_verified": false
        },
        "identification": {
            "date": "2026-11-01",
            "place": "Synthetic Port",
            "identifying_agency": "Synthetic Provincial Office",
            "status": "presumed",
            "reflection_period_start": "2026-11-01"
        },
        "exploitation_type": "fishing",
        "placement": {
            "shelter_name": "Synthetic Shelter",
            "shelter_type": "government",
            "city": "Synthetic City",
            "country": "TH"
        },
        "needs": {"medical": true, "psychosocial": true, "legal": false, "interpreter_language": "km"},
        "risk_level": "low",
        "consent": {
            "to_share_information": true,
            "to_return": true,
            "recorded_by": "Synthetic social worker",
            "recorded_at": "2026-11-02T08:00:00Z"
        }
    })
}

pub fn case_ref(from: &str, to: &str, serial: usize) -> String {
    format!("{from}-{to}-2026-{serial:06}")
}

/// A full referral envelope from `from` to `to`.
pub fn referral(from: &str, to: &str, case: &str, n: usize) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": case,
        "type": "referral.notify",
        "schema_version": 1,
        "from": from,
        "to": to,
        "in_reply_to": null,
        "created_at": "2026-11-22T09:30:00Z",
        "payload": referral_payload(n),
    })
}

pub fn acknowledge(from: &str, to: &str, case: &str, in_reply_to: &str) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": case,
        "type": "referral.acknowledge",
        "schema_version": 1,
        "from": from,
        "to": to,
        "in_reply_to": in_reply_to,
        "created_at": "2026-11-22T10:30:00Z",
        "payload": {
            "accepted": true,
            "receiver_case_number": "SYN-2026-0001",
            "responsible_officer": {"name": "Synthetic Officer", "organisation": "Synthetic Department"}
        }
    })
}

/// The payload of a published valid example of `message_type` whose payload
/// satisfies `pick` (so tests follow the schemas as they evolve).
pub fn example_payload(message_type: &str, pick: impl Fn(&Value) -> bool) -> Value {
    example_payload_v(message_type, 1, pick)
}

/// [`example_payload`] of schema `version` (a later version's examples sit
/// in `schemas/examples/<type>/v<N>/`).
pub fn example_payload_v(message_type: &str, version: u32, pick: impl Fn(&Value) -> bool) -> Value {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples")
        .join(message_type);
    if version > 1 {
        dir = dir.join(format!("v{version}"));
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| f.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("valid-")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(&std::fs::read_to_string(f).unwrap()).unwrap()["payload"]
                .clone()
        })
        .find(|p| pick(p))
        .unwrap_or_else(|| panic!("no valid {message_type} v{version} example matches"))
}

/// A full envelope around `payload`.
pub fn envelope(
    message_type: &str,
    from: &str,
    to: &str,
    case: &str,
    in_reply_to: Option<&str>,
    payload: Value,
) -> Value {
    json!({
        "message_id": uuid::Uuid::now_v7().to_string(),
        "case_ref": case,
        "type": message_type,
        "schema_version": 1,
        "from": from,
        "to": to,
        "in_reply_to": in_reply_to,
        "created_at": "2026-11-22T11:00:00Z",
        "payload": payload,
    })
}

/// [`envelope`] of schema `version`.
pub fn envelope_v(
    version: u32,
    message_type: &str,
    from: &str,
    to: &str,
    case: &str,
    in_reply_to: Option<&str>,
    payload: Value,
) -> Value {
    let mut e = envelope(message_type, from, to, case, in_reply_to, payload);
    e["schema_version"] = json!(version);
    e
}

/// A `referral.update` with a synthetic placement change.
pub fn update(from: &str, to: &str, case: &str, n: usize) -> Value {
    let mut payload = example_payload("referral.update", |p| p["reason"] == "placement_changed");
    payload["summary"] = json!(format!("synthetic update {n}"));
    envelope("referral.update", from, to, case, None, payload)
}

/// The receiver's inbox holds exactly the `sent` messages (in submission
/// order), each once, and per case in submission order.
pub fn assert_exactly_once_in_order(inbox: &[Value], sent: &[&Value]) {
    use std::collections::{BTreeMap, BTreeSet};
    let id = |m: &Value| m["message_id"].as_str().expect("message_id").to_string();
    let ids: Vec<String> = inbox.iter().map(id).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), sent.len(), "no message twice, none extra");
    assert_eq!(unique.len(), sent.len(), "no message twice");
    let expected_ids: BTreeSet<String> = sent.iter().map(|m| id(m)).collect();
    assert!(
        unique == expected_ids,
        "exactly the accepted messages arrived"
    );
    let by_case = |ms: &mut dyn Iterator<Item = &Value>| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in ms {
            map.entry(m["case_ref"].as_str().expect("case_ref").to_string())
                .or_default()
                .push(id(m));
        }
        map
    };
    assert!(
        by_case(&mut inbox.iter()) == by_case(&mut sent.iter().copied()),
        "per case, the receiver got messages in submission order"
    );
}

/// A person handed over: sex, age in years, presumed minor.
pub type Person = (&'static str, i64, bool);

/// `m` with its `created_at` set.
pub fn at(mut m: Value, created_at: &str) -> Value {
    m["created_at"] = json!(created_at);
    m
}

/// Submits a batch and waits until every message is delivered; the ids.
pub async fn exchange(api: &Api, messages: Vec<Value>) -> Vec<String> {
    let r = api.submit_batch(&messages, None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for item in r.body["results"].as_array().unwrap() {
        assert_eq!(item["status"], 202, "{item}");
    }
    let mut ids = Vec::new();
    for m in &messages {
        let id = m["message_id"].as_str().unwrap().to_string();
        let status = api.wait_final(&id, Duration::from_secs(30)).await;
        assert_eq!(
            status.as_ref().map(|s| s["state"].clone()),
            Some(json!("delivered")),
            "{status:?}"
        );
        ids.push(id);
    }
    ids
}

/// One synthetic case per person, `partner` (the host country, `host` its
/// API) with KH (`kh`), serials from `first_serial`: referral,
/// acknowledgement, repatriation request and confirmation, and the handover
/// at `handed_over_at` (RFC 3339). The case references.
pub async fn run_cases(
    partner: &str,
    host: &Api,
    kh: &Api,
    persons: &[Person],
    first_serial: usize,
    handed_over_at: &str,
) -> Vec<String> {
    let cases: Vec<String> = (0..persons.len())
        .map(|i| case_ref(partner, "KH", first_serial + i))
        .collect();
    let referrals: Vec<Value> = cases
        .iter()
        .zip(persons)
        .enumerate()
        .map(|(i, (case, (sex, age, minor)))| {
            let mut m = referral(partner, "KH", case, i);
            let person = &mut m["payload"]["person"];
            person["sex"] = json!(sex);
            person["estimated_age"] = json!(age);
            person["presumed_minor"] = json!(minor);
            m["payload"]["placement"]["country"] = json!(partner);
            at(m, "2026-03-02T09:00:00Z")
        })
        .collect();
    let referral_ids = exchange(host, referrals).await;
    let acks = cases
        .iter()
        .zip(&referral_ids)
        .map(|(case, id)| at(acknowledge("KH", partner, case, id), "2026-03-04T09:00:00Z"))
        .collect();
    exchange(kh, acks).await;
    let requests: Vec<Value> = cases
        .iter()
        .zip(persons)
        .map(|(case, (sex, age, minor))| {
            let mut payload = example_payload("repatriation.request", |_| true);
            payload["persons"] = json!([{
                "person_ref": "P1", "name_latin": "Synthetic Returnee", "sex": sex,
                "estimated_age": age, "presumed_minor": minor,
            }]);
            at(
                envelope("repatriation.request", partner, "KH", case, None, payload),
                "2026-04-01T09:00:00Z",
            )
        })
        .collect();
    let request_ids = exchange(host, requests).await;
    let confirms = cases
        .iter()
        .zip(&request_ids)
        .map(|(case, id)| {
            envelope(
                "repatriation.confirm",
                "KH",
                partner,
                case,
                Some(id),
                example_payload("repatriation.confirm", |p| p["decision"] == "accepted"),
            )
        })
        .collect();
    exchange(kh, confirms).await;
    let handovers = cases
        .iter()
        .map(|case| {
            let mut payload =
                example_payload("repatriation.handover", |p| p["record"] == "handover");
            payload["persons"] = json!(["P1"]);
            payload["handed_over_at"] = json!(handed_over_at);
            envelope("repatriation.handover", partner, "KH", case, None, payload)
        })
        .collect();
    exchange(host, handovers).await;
    cases
}
