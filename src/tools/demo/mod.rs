//! `homeward demo`: four gateways (KH, TH, VN, MY) on 127.0.0.1 with SQLite
//! files in a temporary directory, and one synthetic case on each corridor
//! ([`cases`]): KH–TH runs from referral to closure and both timelines are
//! printed. Then a refusal (TH and VN have no agreement), KH's
//! de-identified statistics, the reconciliation of each corridor, and the
//! KH–TH handover record written to a file.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::config::DeliverySettings;
use crate::tools::devnet::DevNet;

mod cases;

use cases::{CASES, DemoCase};

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
async fn exchange(net: &DevNet) -> anyhow::Result<()> {
    for case in CASES {
        run_case(net, case).await?;
    }

    let refused = net.api("TH").submit(&demo_referral()).await?;
    println!(
        "\nA second referral.notify for the closed case is refused: HTTP {} {}",
        refused.status,
        refused.body["error"]["message"].as_str().unwrap_or("")
    );
    // Thailand and Vietnam signed no agreement: nothing may pass between them.
    let mut th_vn = demo_referral();
    th_vn["case_ref"] = json!("TH-VN-2026-000001");
    th_vn["to"] = json!("VN");
    th_vn["payload"]["person"]["nationality_claimed"] = json!("VN");
    let refused = net.api("TH").submit(&th_vn).await?;
    println!(
        "A referral from TH to VN is refused: HTTP {} {}: {}",
        refused.status,
        refused.body["error"]["code"].as_str().unwrap_or(""),
        refused.body["error"]["message"].as_str().unwrap_or("")
    );
    if refused.status < 400 {
        bail!("TH accepted a message to VN, with which it has no agreement");
    }

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
    statistics(net).await?;
    reconcile(net).await?;
    handover_record(net).await
}

async fn run_case(net: &DevNet, case: &DemoCase) -> anyhow::Result<()> {
    let wait = Duration::from_secs(20);
    let mut ids: Vec<String> = Vec::new();
    println!(
        "\nCase {} ({}), synthetic persons:\n",
        case.case_ref, case.title
    );
    for (n, step) in case.steps.iter().enumerate() {
        let (sender, receiver) = if step.host_sends {
            (case.host, case.origin)
        } else {
            (case.origin, case.host)
        };
        let mut msg: Value = serde_json::from_str(step.example).context("demo example")?;
        let id = uuid::Uuid::now_v7().to_string();
        msg["message_id"] = json!(id);
        msg["case_ref"] = json!(case.case_ref);
        msg["from"] = json!(sender);
        msg["to"] = json!(receiver);
        msg["in_reply_to"] = json!(step.reply_to.map(|i| ids[i].clone()));
        msg.as_object_mut().map(|o| o.remove("created_at"));
        (step.patch)(&mut msg["payload"]);
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
            .get(&format!("/v1/cases/{}", case.case_ref))
            .await?
            .body["state"]
            .clone();
        let due = status["receipt"]["answer_due"].clone();
        println!(
            "{:>2}. {sender} -> {receiver}  {:<24} v{} delivered, case now {:<22} {}",
            n + 1,
            msg["type"].as_str().unwrap_or(""),
            msg["schema_version"],
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
    Ok(())
}

/// The de-identified statistics KH holds for the year, as a ministry's
/// report would show them.
async fn statistics(net: &DevNet) -> anyhow::Result<()> {
    let year = time::OffsetDateTime::now_utc().year();
    for (count, group_by) in [
        ("referrals", "corridor,sex,age_band"),
        ("returnees", "corridor,sex,minor,gate"),
    ] {
        let table = net
            .api("KH")
            .get(&format!(
                "/v1/statistics?count={count}&from={year}&to={year}&group_by={group_by}"
            ))
            .await?;
        if table.status != 200 {
            bail!("statistics: HTTP {} {}", table.status, table.body);
        }
        let t = &table.body;
        println!(
            "\nDe-identified statistics at KH, {year}: {count} by {group_by} (counts below {} shown as <{}):",
            t["k"], t["k"]
        );
        for c in t["cells"].as_array().into_iter().flatten() {
            let keys: Vec<&str> = group_by
                .split(',')
                .map(|g| c["keys"][g].as_str().unwrap_or("-"))
                .collect();
            println!(
                "  {:<48} {}",
                keys.join("  "),
                c["shown"].as_str().unwrap_or("")
            );
        }
        println!(
            "  {:<48} {}",
            "total",
            t["total"]["shown"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// KH reconciles each corridor with its peer.
async fn reconcile(net: &DevNet) -> anyhow::Result<()> {
    let year = time::OffsetDateTime::now_utc().year().to_string();
    println!("\nReconciliation of {year}, KH with each peer:");
    let node = &net.nodes["KH"].gateway.node;
    for peer in ["TH", "VN", "MY"] {
        let outcome = crate::app::reconcile::with_peer(
            &node.settings,
            &node.credentials(),
            &node.agreements(),
            &node.store,
            peer,
            (&year, &year),
        )
        .await?;
        let c = &outcome.comparison;
        let messages: u64 = c.agreed.iter().map(|a| a.count).sum();
        println!(
            "  {}: {} ({} cells, {messages} messages; {}'s tally {})",
            c.corridor,
            if c.agrees() {
                "both sides agree"
            } else {
                "THE SIDES DIFFER"
            },
            c.agreed.len() + c.differing.len(),
            peer,
            if outcome.signed {
                "signed and verified"
            } else {
                "unsigned"
            }
        );
        if !c.agrees() {
            bail!("reconciliation with {peer} found differences: {c:?}");
        }
    }
    Ok(())
}

/// The printable, bilingual handover record of the KH–TH case, written to
/// a file outside the demo's temporary directory.
async fn handover_record(net: &DevNet) -> anyhow::Result<()> {
    let page = net
        .api("KH")
        .get_text(&format!("/v1/cases/{CASE_REF}/handover"))
        .await?;
    if page.0 != 200 {
        bail!("handover record: HTTP {} {}", page.0, page.1);
    }
    let path = std::env::temp_dir().join(format!("homeward-demo-handover-{CASE_REF}.html"));
    std::fs::write(&path, &page.1).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "\nThe handover record of {CASE_REF} (English, Khmer, Thai; print it to A4): {}",
        path.display()
    );
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
