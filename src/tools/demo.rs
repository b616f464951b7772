//! `homeward demo`: four gateways (KH, TH, VN, MY) on 127.0.0.1 with SQLite
//! files in a temporary directory. Thailand refers a (synthetic) Cambodian
//! victim to Cambodia; Cambodia's case system reads it from its inbox and
//! acknowledges; the case timeline of both sides is printed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::DeliverySettings;
use crate::tools::devnet::DevNet;

const CASE_REF: &str = "TH-KH-2026-000042";

/// A synthetic referral: every name and number here is invented.
pub fn demo_referral() -> Value {
    json!({
        "case_ref": CASE_REF,
        "type": "referral.notify",
        "schema_version": 1,
        "to": "KH",
        "payload": {
            "person": {
                "name_native": "សុខា គំរូ",
                "name_latin": "Sokha Example",
                "aliases": ["Kha"],
                "sex": "female",
                "estimated_age": 16,
                "presumed_minor": true,
                "nationality_claimed": "KH",
                "nationality_verified": false,
                "identity_documents": []
            },
            "identification": {
                "date": "2026-11-18",
                "place": "Songkhla",
                "identifying_agency": "Songkhla Provincial Office of Social Development and Human Security",
                "status": "presumed",
                "reflection_period_start": "2026-11-18"
            },
            "exploitation_type": "domestic_servitude",
            "placement": {
                "shelter_name": "Songkhla Protection and Occupational Development Centre",
                "shelter_type": "government",
                "city": "Songkhla",
                "country": "TH"
            },
            "needs": {"medical": false, "psychosocial": true, "legal": true, "interpreter_language": "km"},
            "risk_level": "medium",
            "consent": {
                "to_share_information": true,
                "to_return": true,
                "recorded_by": "Duty social worker (synthetic)",
                "recorded_at": "2026-11-19T10:00:00Z"
            }
        }
    })
}

pub fn demo_acknowledge(in_reply_to: &str) -> Value {
    json!({
        "case_ref": CASE_REF,
        "type": "referral.acknowledge",
        "schema_version": 1,
        "to": "TH",
        "in_reply_to": in_reply_to,
        "payload": {
            "accepted": true,
            "receiver_case_number": "MOSVY-2026-0815",
            "responsible_officer": {
                "name": "Officer Example",
                "organisation": "MOSVY Department of Social Welfare"
            },
            "next_steps": ["family tracing by the provincial DoSVY"]
        }
    })
}

pub async fn run(certs: &Path, agreements: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    for cc in ["kh", "th", "vn", "my"] {
        let dir = certs.join(cc);
        if !dir.join("peer.pem").is_file() {
            bail!(
                "development certificates not found in {} (run from the repository root, or `homeward dev-certs --out {}`)",
                dir.display(),
                certs.display()
            );
        }
    }
    let data = tempfile::tempdir().context("creating a temporary directory")?;
    let delivery = DeliverySettings {
        initial_backoff_ms: 100,
        max_backoff_ms: 2_000,
        ..DeliverySettings::default()
    };
    let net = DevNet::start(
        &["KH", "TH", "VN", "MY"],
        certs,
        agreements,
        data.path(),
        delivery,
    )
    .await?;
    println!(
        "Four gateways on 127.0.0.1 (data in {}):",
        data.path().display()
    );
    for (cc, n) in &net.nodes {
        println!(
            "  {cc}  peer port {:<5}  local API {:<5}  {}",
            n.gateway.peer_addr.port(),
            n.gateway.api_addr.port(),
            crate::tools::devnet::organisation(cc)
        );
    }
    let result = exchange(&net).await;
    net.stop().await;
    result?;
    println!(
        "\nDemo finished in {:.1}s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One step of the demo case: who sends which published example, answering which earlier step.
struct Step {
    from: &'static str,
    example: &'static str,
    reply_to: Option<usize>,
    what: &'static str,
}

macro_rules! example {
    ($path:literal) => {
        include_str!(concat!("../../schemas/examples/", $path, ".json"))
    };
}

const STEPS: &[Step] = &[
    Step {
        from: "TH",
        example: example!("referral.notify/valid-child-estimated-age"),
        reply_to: None,
        what: "Thailand refers a presumed victim, a Cambodian girl, to Cambodia",
    },
    Step {
        from: "KH",
        example: example!("referral.acknowledge/valid-accepted"),
        reply_to: Some(0),
        what: "Cambodia's case system reads its inbox and accepts the case",
    },
    Step {
        from: "TH",
        example: example!("family-tracing.request/valid-girl-referred"),
        reply_to: None,
        what: "Thailand asks Cambodia to trace and assess the family",
    },
    Step {
        from: "KH",
        example: example!("family-tracing.result/valid-family-found-safe"),
        reply_to: Some(2),
        what: "Cambodia reports: nationality verified, family found, safe to return",
    },
    Step {
        from: "TH",
        example: example!("repatriation.request/valid-land-poipet"),
        reply_to: None,
        what: "Thailand proposes return by land via Poipet–Aranyaprathet",
    },
    Step {
        from: "KH",
        example: example!("repatriation.confirm/valid-accepted"),
        reply_to: Some(4),
        what: "Cambodia accepts; MOSVY's Poipet transit centre will receive her",
    },
    Step {
        from: "TH",
        example: example!("repatriation.handover/valid-handover-record"),
        reply_to: None,
        what: "Thailand records the handover at the border",
    },
    Step {
        from: "KH",
        example: example!("repatriation.handover/valid-countersignature"),
        reply_to: Some(6),
        what: "Cambodia countersigns the handover",
    },
    Step {
        from: "KH",
        example: example!("reintegration.report/valid-three-months-open"),
        reply_to: None,
        what: "Cambodia reports on reintegration after three months",
    },
    Step {
        from: "KH",
        example: example!("reintegration.report/valid-twelve-months-closed"),
        reply_to: None,
        what: "Cambodia's twelve-month report closes the case",
    },
];

async fn exchange(net: &DevNet) -> anyhow::Result<()> {
    let wait = Duration::from_secs(20);
    let mut ids: Vec<String> = Vec::new();
    println!("\nCase {CASE_REF}, synthetic person, from referral to closure:\n");
    for (n, step) in STEPS.iter().enumerate() {
        let (sender, receiver) = if step.from == "TH" {
            ("TH", "KH")
        } else {
            ("KH", "TH")
        };
        let mut msg: Value = serde_json::from_str(step.example).context("demo example")?;
        let id = uuid::Uuid::now_v7().to_string();
        msg["message_id"] = json!(id);
        msg["case_ref"] = json!(CASE_REF);
        msg["from"] = json!(sender);
        msg["to"] = json!(receiver);
        msg["in_reply_to"] = json!(step.reply_to.map(|i| ids[i].clone()));
        msg.as_object_mut().map(|o| o.remove("created_at"));
        let api = net.api(sender);
        let r = api.submit(&msg).await?;
        if r.status != 202 {
            bail!(
                "{sender} refused {}: HTTP {} {}",
                msg["type"],
                r.status,
                r.body
            );
        }
        let status = api
            .wait_final(&id, wait)
            .await
            .context("not delivered in time")?;
        if status["state"] != "delivered" {
            bail!(
                "{} ended {}: {}",
                msg["type"],
                status["state"],
                status["last_error"]
            );
        }
        // The receiving case system picks the message up from its inbox feed.
        let inbox = net
            .api(receiver)
            .get("/v1/inbox?after=0&limit=1000")
            .await?;
        let seen = inbox.body["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["message_id"] == json!(id)));
        if !seen {
            bail!("{receiver}'s inbox does not show {id}");
        }
        let state = net
            .api("KH")
            .get(&format!("/v1/cases/{CASE_REF}"))
            .await?
            .body["state"]
            .clone();
        let due = status["receipt"]["answer_due"].clone();
        println!(
            "{:>2}. {sender} -> {receiver}  {:<24} delivered, case now {:<22} {}",
            n + 1,
            msg["type"].as_str().unwrap_or(""),
            state.as_str().unwrap_or("-"),
            if due.is_object() {
                format!(
                    "(answer {} due {})",
                    due["type"].as_str().unwrap_or(""),
                    due["due_at"].as_str().unwrap_or("")
                )
            } else {
                String::new()
            }
        );
        println!("      {}", step.what);
        ids.push(id);
    }

    let refused = net.api("TH").submit(&demo_referral()).await?;
    println!(
        "\nA second referral.notify for the closed case is refused: HTTP {} {}",
        refused.status,
        refused.body["error"]["message"].as_str().unwrap_or("")
    );

    for cc in ["TH", "KH"] {
        let case = net
            .api(cc)
            .get(&format!("/v1/cases/{CASE_REF}"))
            .await?
            .body;
        println!(
            "\nCase {CASE_REF} as {cc} sees it (state {}):",
            case["state"].as_str().unwrap_or("-")
        );
        for e in case["timeline"].as_array().into_iter().flatten() {
            print_entry(e);
        }
        println!("  deadlines:");
        for t in case["timers"].as_array().into_iter().flatten() {
            println!(
                "    {:<16} {:<24} -> {:<24} due {}  {}",
                t["side"].as_str().unwrap_or(""),
                t["type"].as_str().unwrap_or(""),
                t["expected_type"].as_str().unwrap_or(""),
                t["due_at"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn print_entry(e: &Value) {
    let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
    let (arrow, at) = if s("direction") == "outbound" {
        (format!("-> {}", s("to")), s("submitted_at"))
    } else {
        (format!("<- {}", s("from")), s("received_at"))
    };
    println!(
        "  {at}  {arrow}  {:<22} {}  {}",
        s("type"),
        s("message_id"),
        s("state")
    );
    if e["receipt"].is_object() {
        let r = &e["receipt"];
        println!(
            "      receipt: received by {} at {}, sha256 {}…",
            r["receiver"].as_str().unwrap_or(""),
            r["received_at"].as_str().unwrap_or(""),
            r["envelope_sha256"]
                .as_str()
                .unwrap_or("")
                .get(..16)
                .unwrap_or("")
        );
    }
}
