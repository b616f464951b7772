//! Protection of victims' data: every route's roles as declared in
//! `http::local::rules()` (each role × each route), no personal value in any
//! embassy or operator response, log line or metric, message bodies sealed
//! in the database file, and a tamper-evident audit log.

use std::time::Duration;

use crate::support::*;
use homeward::config::TokenSettings;
use homeward::domain::access::{Role, hash_token};
use homeward::http::local::rules;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const ROLES: &[Role] = &[
    Role::Caseworker,
    Role::Embassy,
    Role::Operator,
    Role::Integrator,
    Role::Admin,
];

fn token(role: Role) -> String {
    format!("token-{}", role.as_str())
}

fn with_all_roles(s: &mut homeward::config::Settings) {
    for role in ROLES {
        s.tokens.push(TokenSettings {
            name: format!("{}-test", role.as_str()),
            role: *role,
            sha256: hash_token(&token(*role)),
            // The cases here are Thai-identified Cambodians (TH-KH-...).
            serves: (*role == Role::Embassy).then(|| "KH".to_string()),
        });
    }
}

/// Distinctive synthetic values that must never reach embassy or operator
/// eyes, logs or metrics.
const SECRETS: &[&str] = &[
    "Qorvex Zantheby",
    "ឃ្លាំងសម្ងាត់",
    "1989-07-13",
    "ZQ9081726",
    "+855 99 123 987",
    "Ulthane Village",
];

fn secret_referral(case: &str) -> Value {
    let mut m = referral("TH", "KH", case, 1);
    let p = &mut m["payload"]["person"];
    p["name_latin"] = json!(SECRETS[0]);
    p["name_native"] = json!(SECRETS[1]);
    p["date_of_birth"] = json!(SECRETS[2]);
    p["identity_documents"] = json!([{"type": "passport", "number": SECRETS[3], "issuer": "KH"}]);
    m["payload"]["contact_officer"] = json!({"name": "Synthetic Officer", "organisation": "Synthetic Office", "phone": SECRETS[4]});
    m
}

fn secret_tracing(case: &str) -> Value {
    let mut payload = example_payload("family-tracing.request", |_| true);
    payload["home_address"]["village"] = json!(SECRETS[5]);
    payload["person"]["name_latin"] = json!(SECRETS[0]);
    envelope("family-tracing.request", "TH", "KH", case, None, payload)
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} leaks `{s}`: {}",
            &text[..text.len().min(2000)]
        );
    }
}

#[tokio::test]
async fn every_route_admits_exactly_its_roles() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    with_all_roles(&mut kh_settings);
    let th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    // Neither worker runs unless stepped: what KH's callers submit below
    // stays in its outbox.
    let (kh, _kh_worker) = start_manual(kh_settings, kh_l).await;
    let (th, th_worker) = start_manual(th_settings, th_l).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let kh_api = api(&pki, "KH", kh.api_addr);
    let case = case_ref("TH", "KH", 1);
    let referral_msg = referral("TH", "KH", &case, 1);
    let id = referral_msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&referral_msg).await.unwrap().status, 202);
    assert_eq!(step(&th_worker).await, 1);
    assert_eq!(read_inbox(&kh_api).await.len(), 1, "the referral at KH");

    let (client, base) = (kh_api.http(), kh_api.base());
    for rule in &rules() {
        let path = rule
            .path
            .replace("{id}", &id)
            .replace("{case_ref}", &case)
            .replace("{message_type}", "referral.notify")
            .replace("{version}", "1");
        // The statistics need a period.
        let path = if path.starts_with("/v1/statistics") {
            format!("{path}?from=2026&to=2026")
        } else {
            path
        };
        for role in ROLES.iter().map(Some).chain([None]) {
            let mut req = client.request(rule.method.clone(), format!("{base}{path}"));
            if let Some(role) = role {
                req = req.bearer_auth(token(*role));
            }
            if rule.path == "/v1/cases/search" {
                req = req.json(&json!({"case_ref": case}));
            } else if rule.method == reqwest::Method::POST {
                // A new, valid message of the case each time (in a batch of
                // one on the batch route).
                let message = update("KH", "TH", &case, 9);
                req = if rule.path == "/v1/messages/batch" {
                    req.json(&json!({ "messages": [message] }))
                } else {
                    req.json(&message)
                };
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let label = format!(
                "{} {} as {:?}",
                rule.method,
                rule.path,
                role.map(|r| r.as_str())
            );
            match role {
                _ if rule.roles.is_empty() => assert_eq!(status, 200, "{label}: public"),
                None => {
                    assert_eq!(status, 401, "{label}");
                    assert_eq!(body["error"]["code"], "unauthenticated", "{label}");
                }
                Some(r) if rule.roles.contains(r) => {
                    // Re-queueing needs a dead or rejected message of KH's
                    // outbox; this one is in its inbox, so an allowed caller
                    // reaches the handler and gets 404, not 403.
                    if rule.path == "/v1/outbox/{id}/retry" {
                        assert_eq!(status, 404, "{label}: {body}");
                    } else if rule.path == "/v1/cases/{case_ref}/handover" {
                        // The case has not reached its handover: the
                        // handler answers that, not the guard.
                        assert_eq!(status, 404, "{label}: {body}");
                        assert_eq!(body["error"]["code"], "no_handover", "{label}");
                    } else if *r == Role::Embassy && rule.path.starts_with("/v1/messages") {
                        // A mission reaches the handler, which lets it send
                        // only what its agreement names (not an update).
                        let text = body.to_string();
                        // (the batch route answers each message in a 200)
                        assert!(
                            (status == 403 || status == 200)
                                && text.contains("not_allowed_for_mission"),
                            "{label}: got {status} {body}"
                        );
                    } else {
                        assert!((200..300).contains(&status), "{label}: got {status} {body}");
                    }
                }
                Some(r) => {
                    assert_eq!(status, 403, "{label}");
                    assert_eq!(body["error"]["code"], "forbidden", "{label}");
                    assert!(
                        body["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains(r.as_str()),
                        "{label}"
                    );
                }
            }
        }
    }
    th.stop().await;
    kh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_never_reaches_embassy_operator_logs_metrics_or_the_database_file() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh_addrs = (free_addr(), free_addr());
    let th_addrs = (free_addr(), free_addr());
    let mut kh_settings = settings(&pki, "KH", data.path(), kh_addrs, &[("TH", th_addrs.0)]);
    with_all_roles(&mut kh_settings);
    let mut th_settings = settings(&pki, "TH", data.path(), th_addrs, &[("KH", kh_addrs.0)]);
    with_all_roles(&mut th_settings);
    let mut kh = Process::new(data.path(), &kh_settings, api(&pki, "KH", kh_addrs.1));
    let mut th = Process::new(data.path(), &th_settings, api(&pki, "TH", th_addrs.1));
    kh.log_filter = "debug".into();
    th.log_filter = "debug".into();
    kh.start().await;
    th.start().await;
    let (th_api, kh_api) = (th.api.clone(), kh.api.clone());

    let case = case_ref("TH", "KH", 2);
    let referral_msg = secret_referral(&case);
    let referral_id = referral_msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&referral_msg).await.unwrap().status, 202);
    th_api
        .wait_final(&referral_id, WAIT)
        .await
        .expect("delivered");
    let ack = acknowledge("KH", "TH", &case, &referral_id);
    assert_eq!(kh_api.submit(&ack).await.unwrap().status, 202);
    kh_api
        .wait_final(ack["message_id"].as_str().unwrap(), WAIT)
        .await
        .expect("delivered");
    let tracing_msg = secret_tracing(&case);
    let tracing_id = tracing_msg["message_id"].as_str().unwrap().to_string();
    assert_eq!(th_api.submit(&tracing_msg).await.unwrap().status, 202);
    th_api
        .wait_final(&tracing_id, WAIT)
        .await
        .expect("delivered");
    // A refused message with a personal value in a wrong place.
    let mut bad = secret_referral(&case_ref("TH", "KH", 3));
    bad["payload"]["person"]["sex"] = json!(SECRETS[0]);
    let r = th_api.submit(&bad).await.unwrap();
    assert_eq!(r.status, 400);
    assert_clean("a schema refusal", &r.body.to_string());

    // The caseworker does see the data (the test would prove nothing otherwise).
    let inbox = read_inbox(&kh_api).await;
    assert!(inbox.iter().any(|m| m.to_string().contains(SECRETS[0])));

    for (api, id) in [(&th_api, &referral_id), (&kh_api, &tracing_id)] {
        for role in [Role::Embassy, Role::Operator] {
            let as_role = api.with_token(&token(role));
            for rule in rules()
                .iter()
                .filter(|r| r.method == reqwest::Method::GET && r.roles.contains(&role))
            {
                let path = rule
                    .path
                    .replace("{id}", id)
                    .replace("{case_ref}", &case)
                    .replace("{message_type}", "referral.notify")
                    .replace("{version}", "1");
                let path = if path == "/v1/statistics" {
                    format!("{path}?from=2026&to=2026&group_by=corridor,sex,age_band")
                } else if path.starts_with("/v1/statistics") {
                    format!("{path}?from=2026&to=2026")
                } else {
                    path
                };
                let resp = as_role
                    .request(reqwest::Method::GET, &path)
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success(), "{} {path}", role.as_str());
                let text = resp.text().await.unwrap();
                assert_clean(&format!("{} view of {path}", role.as_str()), &text);
            }
        }
    }
    for (p, label) in [(&th, "TH"), (&kh, "KH")] {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(log.contains("message_id"), "{label} logged nothing useful");
        assert_clean(&format!("{label}'s log"), &log);
    }
    th.kill().await;
    kh.kill().await;

    // The database, every row of every table (PostgreSQL) or its files, WAL
    // included (SQLite), holds only sealed bodies.
    if pg::suites_on_postgres() {
        for cc in ["TH", "KH"] {
            let text = database_text(&database_url(data.path(), cc)).await;
            assert!(text.contains("referral.notify"), "{cc}: the dump is empty");
            assert_clean(&format!("{cc}'s database"), &text);
        }
    }
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert_clean(&format!("database file {name}"), &text);
            assert!(!bytes.is_empty() || name.ends_with("-shm"));
        }
    }
}

#[tokio::test]
async fn reads_and_submissions_are_audited_and_tampering_is_detected() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh = Unreachable::new();
    let th_l = bind();
    let mut th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh.addr)]);
    with_all_roles(&mut th_settings);
    let th = start(th_settings.clone(), th_l).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let case = case_ref("TH", "KH", 4);
    let msg = referral("TH", "KH", &case, 4);
    assert_eq!(th_api.submit(&msg).await.unwrap().status, 202);
    th_api
        .with_token(&token(Role::Embassy))
        .case(&case)
        .await
        .unwrap();
    th_api
        .with_token(&token(Role::Integrator))
        .case(&case)
        .await
        .unwrap();
    let id = msg["message_id"].as_str().unwrap();
    assert_eq!(th_api.message(id).await.unwrap().status, 200);
    let admin = th_api.with_token(&token(Role::Admin));
    // A refused re-queue (the message is still queued) is audited against
    // the message it named.
    assert_eq!(admin.outbox_retry(id).await.unwrap().status, 409);

    let log = admin.audit(Some(&case)).await.unwrap().body;
    let records = log["records"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "TH-case-system".to_string(),
                "message.submit".to_string(),
                "ok".to_string()
            ),
            (
                "embassy-test".to_string(),
                "case.read".to_string(),
                "ok".to_string()
            ),
            (
                "integrator-test".to_string(),
                "case.read".to_string(),
                "refused:403".to_string()
            ),
            (
                "TH-case-system".to_string(),
                "message.read".to_string(),
                "ok".to_string()
            ),
            (
                "admin-test".to_string(),
                "message.retry".to_string(),
                "refused:409".to_string()
            ),
        ]
    );
    for r in &records[3..] {
        assert_eq!(r["message_id"], msg["message_id"], "{r}");
    }
    th.stop().await;

    let config = data.path().join("th-audit.toml");
    std::fs::write(&config, toml::to_string(&th_settings).unwrap()).unwrap();
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_homeward"))
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Someone edits a record behind the gateway's back (dropping the
    // append-only trigger first): the chain names the record.
    let pool = any_pool(&database_url(data.path(), "TH")).await;
    let drop_trigger = if pg::suites_on_postgres() {
        "DROP TRIGGER audit_no_update ON audit"
    } else {
        "DROP TRIGGER audit_no_update"
    };
    sqlx::query(drop_trigger).execute(&pool).await.unwrap();
    sqlx::query("UPDATE audit SET actor = 'somebody-else' WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("record 2"), "{text}");
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let kh = Unreachable::new();
    let th_l = bind();
    let th = start(
        settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh.addr)]),
        th_l,
    )
    .await;
    let th_api = api(&pki, "TH", th.api_addr);
    th_api
        .submit(&referral("TH", "KH", &case_ref("TH", "KH", 5), 5))
        .await
        .unwrap();
    th.stop().await;
    let pool = any_pool(&database_url(data.path(), "TH")).await;
    assert!(
        sqlx::query("UPDATE audit SET actor = 'x'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit")
            .execute(&pool)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn callers_over_their_rate_get_429_and_peers_are_retried_without_loss() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_settings.peer_api.rate_per_second = 5.0;
    kh_settings.peer_api.burst = 2;
    let mut th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    th_settings.local_api.rate_per_second = 0.5;
    th_settings.local_api.burst = 8;
    let kh = start(kh_settings, kh_l).await;
    let th = start(th_settings, th_l).await;
    let th_api = api(&pki, "TH", th.api_addr);
    let mut ids = Vec::new();
    for i in 0..6 {
        let m = referral("TH", "KH", &case_ref("TH", "KH", 100 + i), i);
        ids.push(m["message_id"].as_str().unwrap().to_string());
        assert_eq!(th_api.submit(&m).await.unwrap().status, 202);
    }
    // Two more requests exhaust the burst of 8; the ninth is refused.
    th_api.inbox(None, None).await.unwrap();
    th_api.inbox(None, None).await.unwrap();
    let resp = th_api
        .request(reqwest::Method::GET, "/v1/inbox")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // KH's peer port let TH through two at a time; the rest were retried.
    let kh_api = api(&pki, "KH", kh.api_addr);
    eventually("all six at KH", WAIT, || async {
        read_inbox(&kh_api).await.len() == 6
    })
    .await;
    th.stop().await;
    kh.stop().await;
}

#[tokio::test]
async fn payloads_of_finished_cases_are_purged_after_retention_and_the_case_remains() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let agreements = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(agreements_dir().join("kh-th.toml")).unwrap();
    std::fs::write(
        agreements.path().join("kh-th.toml"),
        format!("retention_days = 0\n{text}"),
    )
    .unwrap();
    let (kh_l, th_l) = (bind(), bind());
    let mut kh_settings = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th_l.peer_addr())]);
    kh_settings.agreements.dir = agreements.path().to_path_buf();
    let mut th_settings = settings_for(&pki, "TH", data.path(), &th_l, &[("KH", kh_l.peer_addr())]);
    th_settings.agreements.dir = agreements.path().to_path_buf();
    let (kh, kh_worker) = start_manual(kh_settings.clone(), kh_l).await;
    let (th, th_worker) = start_manual(th_settings, th_l).await;
    let (th_api, kh_api) = (api(&pki, "TH", th.api_addr), api(&pki, "KH", kh.api_addr));

    let done = case_ref("TH", "KH", 7);
    let open = case_ref("TH", "KH", 8);
    let m = secret_referral(&done);
    assert_eq!(th_api.submit(&m).await.unwrap().status, 202);
    assert_eq!(
        th_api.submit(&secret_referral(&open)).await.unwrap().status,
        202
    );
    assert_eq!(drain(&th_worker).await, 2);
    assert_eq!(read_inbox(&kh_api).await.len(), 2, "both referrals at KH");
    let withdraw = envelope(
        "referral.withdraw",
        "KH",
        "TH",
        &done,
        None,
        example_payload("referral.withdraw", |p| p["reason"] == "not_a_national"),
    );
    assert_eq!(kh_api.submit(&withdraw).await.unwrap().status, 202);
    let status = step_one(
        &kh_worker,
        &kh_api,
        withdraw["message_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status["state"], "delivered", "{status}");
    kh.stop().await;

    let config = data.path().join("kh-purge.toml");
    std::fs::write(&config, toml::to_string(&kh_settings).unwrap()).unwrap();
    let purge = |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_homeward"));
        cmd.args(["purge", "--config"]).arg(&config);
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = purge(true);
    assert!(
        listed.contains(&format!("would purge {done}: withdrawn")),
        "{listed}"
    );
    assert!(!listed.contains(&open), "an open case is kept: {listed}");
    assert!(purge(false).contains("1 case(s) purged"));
    assert!(purge(true).contains("0 case(s) would purge"));

    // KH comes back on new ports (only its local API is asked from here on).
    let kh_l = bind();
    (kh_settings.peer_api.listen, kh_settings.local_api.listen) = addrs(&kh_l);
    let kh = start(kh_settings, kh_l).await;
    let kh_api = api(&pki, "KH", kh.api_addr);
    let view = kh_api.case(&done).await.unwrap().body;
    assert_eq!(
        view["state"], "withdrawn",
        "the case and its state remain: {view}"
    );
    assert_eq!(view["timeline"].as_array().unwrap().len(), 2);
    let inbox = read_inbox(&kh_api).await;
    let purged = inbox
        .iter()
        .find(|e| e["case_ref"] == done.as_str())
        .unwrap();
    assert_clean("a purged message", &purged["envelope"].to_string());
    assert!(purged["envelope"]["purged_at"].is_string());
    let kept = inbox
        .iter()
        .find(|e| e["case_ref"] == open.as_str())
        .unwrap();
    assert!(
        kept["envelope"].to_string().contains(SECRETS[0]),
        "open cases keep their data"
    );
    th.stop().await;
    kh.stop().await;
}

/// A client CA and one client certificate signed by it, as PEM.
fn client_cert(
    dir: &std::path::Path,
    cn: &str,
) -> (std::path::PathBuf, homeward::tls::Identity, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Synthetic client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Synthetic Ministry");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_path = dir.join(format!("{cn}-ca.pem"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let identity = homeward::tls::Identity::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
    let subject = homeward::tls::subject_of(&identity.chain[0]).unwrap();
    (ca_path, identity, subject)
}

fn api_client_with_cert(pki: &Pki, identity: &homeward::tls::Identity) -> reqwest::Client {
    let ca = homeward::tls::load_certs(&pki.paths("KH").ca_cert).unwrap();
    let roots = homeward::tls::roots_from(&ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(homeward::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_client_certificate_maps_to_a_role_by_its_subject() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let (ca_path, embassy_id, subject) = client_cert(data.path(), "embassy-desk-1");
    let th = Unreachable::new();
    let kh_l = bind();
    let mut s = settings_for(&pki, "KH", data.path(), &kh_l, &[("TH", th.addr)]);
    s.local_api.client_ca = Some(ca_path);
    s.client_certs.push(homeward::config::ClientCertSettings {
        name: "embassy-desk-1".into(),
        role: Role::Embassy,
        subject: subject.clone(),
        serves: Some("KH".into()),
    });
    let kh = start(s, kh_l).await;
    let base = format!("https://127.0.0.1:{}", kh.api_addr.port());
    let client = api_client_with_cert(&pki, &embassy_id);
    // The embassy may read the schema list; it submits only its
    // nationals' cases (this one is a Thai national's: as if none).
    let r = client
        .get(format!("{base}/v1/schemas"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{base}/v1/messages"))
        .json(&referral("KH", "TH", &case_ref("KH", "TH", 1), 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A valid certificate whose subject is not configured gets no role.
    let (_, stranger, _) = client_cert(data.path(), "someone-else");
    let r = api_client_with_cert(&pki, &stranger)
        .get(format!("{base}/v1/schemas"))
        .send()
        .await;
    assert!(
        r.is_err() || r.unwrap().status() == 401,
        "unknown CA or unknown subject: refused"
    );
    kh.stop().await;
}
