//! `homeward demo`: four gateways (KH, TH, VN, MY) on 127.0.0.1 with SQLite
//! files in a temporary directory. Thailand refers a (synthetic) Cambodian
//! victim to Cambodia; Cambodia's case system reads it from its inbox and
//! acknowledges; the case timeline of both sides is printed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::DeliverySettings;
use crate::devnet::DevNet;

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
            crate::devnet::organisation(cc)
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

async fn exchange(net: &DevNet) -> anyhow::Result<()> {
    let th = net.api("TH");
    let kh = net.api("KH");
    let wait = Duration::from_secs(20);

    println!("\n1. TH submits referral.notify for case {CASE_REF} to KH");
    let r = th.submit(&demo_referral()).await?;
    if r.status != 202 {
        bail!("TH refused the referral: HTTP {} {}", r.status, r.body);
    }
    let referral_id = r.body["message_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("   202 Accepted, message_id {referral_id}");
    let status = th
        .wait_final(&referral_id, wait)
        .await
        .context("referral not delivered in time")?;
    println!(
        "   state {} after {} attempt(s)",
        status["state"], status["attempts"]
    );
    if status["state"] != "delivered" {
        bail!(
            "referral ended {}: {}",
            status["state"],
            status["last_error"]
        );
    }

    println!("\n2. KH's case system reads its inbox");
    let inbox = kh.get("/v1/inbox?after=0").await?;
    let first = inbox.body["messages"]
        .as_array()
        .and_then(|m| m.first())
        .cloned()
        .context("KH inbox is empty")?;
    println!(
        "   {} {} from {} (cursor {})",
        first["type"].as_str().unwrap_or(""),
        first["message_id"].as_str().unwrap_or(""),
        first["from"].as_str().unwrap_or(""),
        first["cursor"].as_str().unwrap_or("")
    );

    println!("\n3. KH answers with referral.acknowledge");
    let r = kh.submit(&demo_acknowledge(&referral_id)).await?;
    if r.status != 202 {
        bail!(
            "KH refused the acknowledgement: HTTP {} {}",
            r.status,
            r.body
        );
    }
    let ack_id = r.body["message_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = kh
        .wait_final(&ack_id, wait)
        .await
        .context("acknowledgement not delivered in time")?;
    if status["state"] != "delivered" {
        bail!(
            "acknowledgement ended {}: {}",
            status["state"],
            status["last_error"]
        );
    }
    println!("   delivered to TH");

    for (cc, api) in [("TH", th), ("KH", kh)] {
        println!("\nCase {CASE_REF} as {cc} sees it:");
        let case = api.get(&format!("/v1/cases/{CASE_REF}")).await?;
        for e in case.body["timeline"].as_array().into_iter().flatten() {
            print_entry(e);
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
