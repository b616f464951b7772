//! Checking before going live: `check-config` (configuration, agreements,
//! schemas, certificates) and `validate` (message files).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Settings;
use crate::domain::message::SchemaRegistry;

/// What is wrong with a signing certificate and key, if anything: they
/// must load together, name this node, and be for document signing only.
fn signing_problem(cert: &std::path::Path, key: &std::path::Path, country: &str) -> Option<String> {
    let signer = match crate::signing::Signer::load(cert, key) {
        Ok(s) => s,
        Err(e) => return Some(e.to_string()),
    };
    if signer.node() != Some(country) {
        return Some(format!(
            "names node {:?}, not urn:homeward:node:{country}",
            signer.node()
        ));
    }
    let der = crate::tls::load_certs(cert).ok()?.into_iter().next()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let eku = parsed.extended_key_usage().ok().flatten();
    let signing_oid = x509_parser::der_parser::oid::Oid::from(crate::tls::DOCUMENT_SIGNING_ARCS)
        .expect("a valid OID");
    match eku {
        Some(e) if e.value.server_auth || e.value.client_auth => Some(
            "is also a TLS certificate; a signing certificate must be for document signing only"
                .into(),
        ),
        Some(e) if e.value.other.contains(&signing_oid) => None,
        _ => Some("lacks the document-signing purpose (EKU 1.3.6.1.5.5.7.3.36)".into()),
    }
}

/// `homeward check-config`: everything a start would load, plus
/// certificates that expire within 30 days.
pub(super) fn check_config(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let registry = SchemaRegistry::embedded()?;
    let agreements =
        crate::domain::agreement::AgreementBook::load(&settings.agreements.dir, &registry)?;
    let mut problems = 0;
    let now = time::OffsetDateTime::now_utc();
    let mut certs = vec![
        ("tls.cert", settings.tls.cert.clone()),
        ("tls.api_cert", settings.tls.api_cert.clone()),
    ];
    if let Some(sign) = &settings.tls.sign_cert {
        certs.push(("tls.sign_cert", sign.clone()));
    }
    for p in &settings.peers {
        certs.push(("peers[].ca", p.ca.clone()));
    }
    if let Some(ca) = &settings.local_api.client_ca {
        certs.push(("local_api.client_ca", ca.clone()));
    }
    for (key, path) in certs {
        for cert in crate::tls::load_certs(&path)? {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
                .map_err(|e| anyhow::anyhow!("{key} `{}`: {e}", path.display()))?;
            let not_after = parsed.validity().not_after.to_datetime();
            let days = (not_after - now).whole_days();
            let subject = parsed.subject().to_string();
            if days < 0 {
                println!(
                    "EXPIRED  {key} `{}` ({subject}) expired {}",
                    path.display(),
                    not_after.date()
                );
                problems += 1;
            } else if days < 30 {
                println!(
                    "EXPIRING {key} `{}` ({subject}) expires in {days} days",
                    path.display()
                );
                problems += 1;
            } else {
                println!(
                    "ok       {key} `{}` ({subject}) valid {days} more days",
                    path.display()
                );
            }
        }
    }
    let identity = crate::tls::Identity::load(&settings.tls.cert, &settings.tls.key)?;
    anyhow::ensure!(
        identity.node().as_deref() == Some(settings.node.country.as_str()),
        "tls.cert does not name urn:homeward:node:{}",
        settings.node.country
    );
    match (&settings.tls.sign_cert, &settings.tls.sign_key) {
        (Some(cert), Some(key)) => match signing_problem(cert, key, &settings.node.country) {
            None => println!(
                "ok       tls.sign_cert `{}` signs for node {}",
                cert.display(),
                settings.node.country
            ),
            Some(problem) => {
                println!("PROBLEM  tls.sign_cert `{}`: {problem}", cert.display());
                problems += 1;
            }
        },
        _ => println!("note     no tls.sign_cert: this node signs nothing it sends or issues"),
    }
    for p in &settings.peers {
        if let Some(crl) = &p.crl {
            match crate::tls::load_crls(crl) {
                Ok(list) => println!(
                    "ok       peers[{}].crl `{}`: {} list(s)",
                    p.country,
                    crl.display(),
                    list.len()
                ),
                Err(e) => {
                    println!("PROBLEM  peers[{}].crl: {e}", p.country);
                    problems += 1;
                }
            }
        }
    }
    if settings.tls.sign_cert.is_none()
        && let Some(a) = agreements
            .all()
            .iter()
            .find(|a| a.signing_required && a.parties.iter().any(|c| c == &settings.node.country))
    {
        println!(
            "PROBLEM  agreement `{}` requires signatures ([signing] required = true) but no tls.sign_cert is set",
            a.id
        );
        problems += 1;
    }
    for p in &settings.peers {
        match agreements.between(&settings.node.country, &p.country) {
            Some(a) => println!(
                "ok       peer {} under agreement `{}` ({}), border gates: {}",
                p.country,
                a.id,
                a.year,
                if a.gates().is_empty() {
                    "none".to_string()
                } else {
                    a.gates()
                        .iter()
                        .map(|g| g.code.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            None => {
                println!(
                    "WARNING  peer {} is configured but no agreement covers it",
                    p.country
                );
                problems += 1;
            }
        }
    }
    println!(
        "{}: {} schemas (type and version), {} agreements, {} peers, {} tokens{}",
        config.display(),
        registry.schemas().count(),
        agreements.all().len(),
        settings.peers.len(),
        settings.tokens.len(),
        if problems == 0 {
            String::new()
        } else {
            format!("; {problems} problem(s)")
        }
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn validate(files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let registry = SchemaRegistry::embedded()?;
    anyhow::ensure!(
        !files.is_empty(),
        "name at least one file, or - for standard input"
    );
    let mut worst = 0u8;
    let mut reports = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = if name == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(file)
        };
        let (status, problems) = match text {
            Err(e) => (
                2,
                vec![serde_json::json!({"message": format!("cannot read: {e}")})],
            ),
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Err(e) => (
                    1,
                    vec![
                        serde_json::json!({"keyword": "json", "message": format!("not valid JSON: {e}")}),
                    ],
                ),
                Ok(doc) => match registry.validate(&doc) {
                    Ok(_) => (0, vec![]),
                    Err(e) => (
                        1,
                        e.details()
                            .into_iter()
                            .map(|d| serde_json::to_value(d).unwrap_or_default())
                            .collect(),
                    ),
                },
            },
        };
        worst = worst.max(status);
        reports.push(serde_json::json!({"file": name, "valid": status == 0, "readable": status != 2, "violations": problems}));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            let file = r["file"].as_str().unwrap_or_default();
            if r["valid"].as_bool() == Some(true) {
                println!("{file}: valid");
                continue;
            }
            println!(
                "{file}: {}",
                if r["readable"].as_bool() == Some(true) {
                    "INVALID"
                } else {
                    "UNREADABLE"
                }
            );
            for v in r["violations"].as_array().into_iter().flatten() {
                let pointer = v["pointer"].as_str().unwrap_or("");
                let keyword = v["keyword"].as_str().unwrap_or("");
                let message = v["message"].as_str().unwrap_or("");
                println!(
                    "  {} [{}] {}",
                    if pointer.is_empty() { "/" } else { pointer },
                    keyword,
                    message
                );
            }
        }
    }
    Ok(ExitCode::from(worst))
}
