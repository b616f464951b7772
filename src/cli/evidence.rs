//! `homeward evidence export` (on the node, from its store) and
//! `homeward evidence verify` (anywhere, with the countries' CA
//! certificates only). Exit codes: 0 done or verified, 1 the case cannot be
//! exported or the bundle does not verify, 2 unusable input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;
use crate::evidence::{self, ExportError, Trust, VerifyError};
use crate::signing::Signer;
use crate::store::audit::AuditEntry;

#[derive(Subcommand, Debug)]
pub(super) enum EvidenceCommand {
    /// Write a case's evidence bundle: every message this node sent and
    /// received with its signatures, receipts and certificate chains, and
    /// the case's audit records, under a manifest this node signs. The file
    /// holds personal data. Exit 0 written, 1 the case cannot be exported.
    Export {
        #[arg(long, short)]
        config: PathBuf,
        /// The case reference, e.g. TH-KH-2026-000042.
        #[arg(long = "case")]
        case_ref: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle offline. Exit 0 verified, 1 a part does not hold (or
    /// is unsigned), 2 unusable input.
    Verify {
        file: PathBuf,
        /// The countries' CA certificates: <cc>.pem files, or <cc>/ca.pem
        /// directories (as certs-dev/), or files whose certificates name
        /// their country (C=).
        #[arg(long)]
        trust: PathBuf,
        /// A CRL (PEM or DER) to apply, at the time of each signature.
        #[arg(long = "crl")]
        crls: Vec<PathBuf>,
    },
}

pub(super) fn run(command: EvidenceCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvidenceCommand::Export {
            config,
            case_ref,
            out,
        } => export(&config, &case_ref, &out),
        EvidenceCommand::Verify { file, trust, crls } => verify(&file, &trust, &crls),
    }
}

fn export(config: &Path, case_ref: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let (Some(cert), Some(key)) = (&settings.tls.sign_cert, &settings.tls.sign_key) else {
        anyhow::bail!(
            "this node has no signing key (tls.sign_cert, tls.sign_key): a bundle's manifest must be signed"
        );
    };
    let signer = Signer::load(cert, key)?;
    let node = settings.node.country.clone();
    let rt = super::runtime()?;
    let bundle = rt.block_on(async {
        let store = super::store_ops::open_store(&settings).await?;
        let now = crate::clock::system().now_ms();
        let result = evidence::export(&store, &signer, &node, case_ref, now).await;
        // Fail closed, as the route does: no audit record, no bundle.
        let audited = store
            .audit(&[AuditEntry {
                at: now,
                actor: "cli".into(),
                role: "admin".into(),
                action: "evidence.export".into(),
                case_ref: Some(case_ref.to_string()),
                message_id: None,
                result: match &result {
                    Ok(_) => "ok".into(),
                    Err(e) => format!("refused:{}", refusal_code(e)),
                },
                officer: None,
            }])
            .await
            .context("writing the audit record of the export");
        store.close().await;
        audited?;
        anyhow::Ok(result)
    })?;
    let bundle = match bundle {
        Ok(b) => b,
        Err(ExportError::Store(e)) => return Err(e.into()),
        Err(e) => {
            eprintln!("cannot export: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    write_private(out, &bundle.to_json())?;
    println!(
        "case {case_ref}: {} message(s), {} audit record(s) written to {}",
        bundle.messages.len(),
        bundle.audit.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The audit result's code of a refused export.
fn refusal_code(e: &ExportError) -> &'static str {
    match e {
        ExportError::NoSuchCase { .. } => "not_found",
        ExportError::Purged { .. } => "case_purged",
        ExportError::Incomplete { .. } => "incomplete",
        ExportError::SignerNode { .. } => "signer_mismatch",
        ExportError::Store(_) => "store_unavailable",
    }
}

/// Writes `bytes` to `path` readable by its owner only (the bundle holds
/// personal data), whole or not at all.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A temporary file is created 0600 and renamed into place.
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn verify(file: &Path, trust: &Path, crls: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let trust = Trust::load_dir(trust)?.with_crls(crls)?;
    match evidence::verify(&bytes, &trust) {
        Ok(report) => {
            println!("{report}");
            Ok(if report.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(VerifyError::Unusable(reason)) => anyhow::bail!("{}: {reason}", file.display()),
        Err(e @ VerifyError::Broken { .. }) => {
            println!("BROKEN {e}");
            Ok(ExitCode::from(1))
        }
    }
}
