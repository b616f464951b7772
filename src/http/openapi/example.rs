//! Examples for the OpenAPI document: one synthetic case, consistent across
//! routes. A test validates each against its schema.

use serde_json::{Value, json};

pub const ID: &str = "01936f3e-5b7a-7c2d-9a61-000000000013";
pub const CASE: &str = "TH-KH-2026-000043";

/// A valid referral as submitted (one of the published examples).
pub fn envelope() -> Value {
    serde_json::from_str(include_str!(
        "../../../schemas/examples/envelope/valid-referral.json"
    ))
    .expect("the published example is JSON")
}

pub fn receipt() -> Value {
    json!({
        "message_id": ID, "receiver": "KH", "received_at": "2026-11-22T09:30:01.12Z",
        "envelope_sha256": "d7b37a24c8d89eb7a1c0f0e4b4f0a3d2c1b0a9f8e7d6c5b4a3928170f6e5d4c3",
        "answer_due": {"type": "referral.acknowledge", "due_at": "2026-11-25T09:30:01.12Z"},
    })
}

pub fn accepted() -> Value {
    json!({"message_id": ID, "case_ref": CASE, "state": "queued", "status_url": format!("/v1/messages/{ID}")})
}

pub fn outbound_status() -> Value {
    json!({
        "direction": "outbound", "message_id": ID, "case_ref": CASE, "type": "referral.notify",
        "to": "KH", "in_reply_to": null, "state": "delivered", "attempts": 1,
        "submitted_at": "2026-11-22T09:30:00.99Z", "next_attempt_at": null,
        "delivered_at": "2026-11-22T09:30:01.2Z", "delivery_deadline": "2026-11-25T09:30:00.99Z",
        "last_error": null, "receipt": receipt(),
    })
}

pub fn timer() -> Value {
    json!({
        "id": 1, "case_ref": CASE, "message_id": ID, "type": "referral.notify",
        "expected_type": "referral.acknowledge", "side": "awaiting_answer", "peer": "KH",
        "agreement": "kh-th", "state": "open", "started_at": "2026-11-22T09:30:01.12Z",
        "due_at": "2026-11-25T09:30:01.12Z", "reminders_fired": 0,
        "next_event_at": "2026-11-23T21:30:01.12Z", "breached_at": null, "answered_at": null,
        "answer_id": null, "met_late": false,
    })
}

pub fn case_view() -> Value {
    json!({
        "case_ref": CASE, "node": "TH", "state": "referred",
        "allowed_next": ["referral.acknowledge", "referral.update", "referral.withdraw"],
        "timeline": [outbound_status()], "timers": [timer()], "events": [],
    })
}

pub fn violation() -> Value {
    json!({"pointer": "/payload/person/sex", "keyword": "enum",
           "message": "value is not one of \"female\", \"male\" or 2 other candidates"})
}

pub fn schema_violation() -> Value {
    json!({"error": {"code": "schema_violation",
        "message": "the message does not match its schema (1 violation(s))",
        "details": [violation()]}})
}

pub fn sla() -> Value {
    json!({
        "node": "TH", "since": "2026-08-24T00:00:00Z", "until": "2026-11-22T00:00:00Z",
        "groups": [{
            "agreement": "kh-th", "type": "referral.notify", "expected_type": "referral.acknowledge",
            "side": "awaiting_answer", "count": 4, "met_on_time": 3, "met_late": 1, "open": 0,
            "breached": 0, "overdue_now": 0, "median_seconds_to_answer": 36000.0,
            "p90_seconds_to_answer": 280000.0,
        }],
    })
}

pub fn audit_page() -> Value {
    json!({"records": [{
        "seq": 1, "at": "2026-11-22T09:30:00Z", "actor": "kh-case-system", "role": "caseworker",
        "action": "message.submit", "case_ref": CASE, "message_id": ID, "result": "ok",
        "officer": "officer-0042", "hash": "abababababababababababababababababababababababababababababababab",
    }], "next_cursor": 1})
}

pub fn dashboard() -> Value {
    json!({
        "node": "TH", "organisation": "MSDHS", "generated_at": "2026-11-22T10:00:00Z",
        "queues": {"queued": 0, "delivering": 3, "delivered": 12, "rejected": 1, "dead": 0},
        "peers": [{"country": "KH", "reachable": false, "last_success": "2026-11-22T09:00:00Z", "pending": 3}],
        "oldest_pending": {
            "message_id": "01936f3e-5b7a-7c2d-9a61-000000000003", "case_ref": "TH-KH-2026-000003",
            "type": "referral.notify", "peer": "KH", "attempts": 4,
            "submitted_at": "2026-11-22T09:50:00Z", "age_seconds": 600.0,
        },
        "timers": {"open": 2, "breached": 1, "breached_list": [], "due_soon": [timer()]},
        "recent_rejections": [{
            "message_id": "01936f3e-5b7a-7c2d-9a61-000000000002", "case_ref": "TH-KH-2026-000002",
            "type": "referral.notify", "peer": "KH", "state": "rejected",
            "code": "personal_data_withheld",
            "message": "agreement `kh-th` does not allow sharing `/person/date_of_birth`",
        }],
        "certificates_expiring": [{
            "which": "ca:KH", "subject": "CN=Homeward development CA KH, C=KH",
            "not_after": "2026-12-10T00:00:00Z", "days_left": 17,
        }],
    })
}

pub fn batch_answer() -> Value {
    json!({"results": [
        {"status": 200, "receipt": receipt()},
        {"status": 409, "error": {"code": "case_state_conflict",
            "message": "case TH-KH-2026-000044 does not exist (a case starts with `referral.notify`): `repatriation.request` is not allowed now; allowed next: referral.notify",
            "details": []}},
    ]})
}

/// A batch of two: a referral and an update of its case (the update is
/// judged after the referral, so it finds the case).
pub fn message_batch() -> Value {
    let referral = envelope();
    let mut update: Value = serde_json::from_str(include_str!(
        "../../../schemas/examples/referral.update/valid-placement-changed.json"
    ))
    .expect("the published example is JSON");
    update["case_ref"] = referral["case_ref"].clone();
    // The gateway fills these in.
    for filled in ["message_id", "created_at", "from", "in_reply_to"] {
        if let Some(o) = update.as_object_mut() {
            o.remove(filled);
        }
    }
    json!({"messages": [referral, update]})
}

pub fn message_batch_results() -> Value {
    let mut accepted = accepted();
    accepted["index"] = json!(0);
    accepted["status"] = json!(202);
    json!({"results": [
        accepted,
        {"index": 1, "status": 400, "error": schema_violation()["error"]},
    ]})
}

pub fn bad_batch() -> Value {
    json!({"error": {"code": "bad_batch",
        "message": "expected {\"messages\": [1 to 500 envelopes]}: no message in the batch",
        "details": [{"pointer": "/messages", "keyword": "minItems", "message": "no message in the batch"}]}})
}
