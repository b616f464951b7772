//! Reloading without a restart: `SIGHUP` to a running gateway, and
//! `homeward reload`, which checks the files first and then sends it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::app::node::Node;
use crate::app::reload::check_signing;
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::domain::agreement::AgreementBook;
use crate::domain::message::SchemaRegistry;
use crate::store::lock::DatabaseLock;

/// The process's SIGHUP stream, taken before the gateway starts.
#[cfg(unix)]
pub(super) fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
pub(super) fn hangups() -> Option<()> {
    None
}

/// Reloads `node` at every SIGHUP.
#[cfg(unix)]
pub(super) fn on_hangup(hangups: Option<tokio::signal::unix::Signal>, node: Arc<Node>) {
    let Some(mut hangups) = hangups else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let node = node.clone();
            // A refusal is logged and counted where it happens.
            let _ =
                tokio::task::spawn_blocking(move || crate::app::reload::reload(&node, "SIGHUP"))
                    .await;
        }
    });
}

#[cfg(not(unix))]
pub(super) fn on_hangup(_: Option<()>, _: Arc<Node>) {}

/// `homeward reload`: the files are loaded here exactly as the gateway
/// will load them, so a bad one is named now, not only in its log.
pub(super) fn request(config: &Path, pid: Option<u32>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    if let Err(e) = check(&settings) {
        eprintln!("not reloaded: {e:#}");
        return Ok(ExitCode::from(1));
    }
    let pid = match pid {
        Some(p) => p,
        None => match DatabaseLock::holder(&settings.database.url)? {
            Some(p) => p,
            None => {
                eprintln!(
                    "no gateway holds the lock of {} (with PostgreSQL, give --pid)",
                    crate::store::redact_url(&settings.database.url)
                );
                return Ok(ExitCode::from(2));
            }
        },
    };
    send_hangup(pid)?;
    println!(
        "asked gateway pid {pid} to reload; its log and homeward_reloads_total say the outcome"
    );
    Ok(ExitCode::SUCCESS)
}

fn check(settings: &Settings) -> anyhow::Result<()> {
    let registry = SchemaRegistry::embedded()?;
    let agreements = AgreementBook::load(&settings.agreements.dir, &registry)?;
    let credentials = Credentials::load(settings)?;
    check_signing(&settings.node.country, &agreements, &credentials)?;
    Ok(())
}

#[cfg(unix)]
fn send_hangup(pid: u32) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) with a plain pid and signal number has no memory effects.
    let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending SIGHUP to pid {pid}"));
    }
    Ok(())
}

#[cfg(not(unix))]
fn send_hangup(_: u32) -> anyhow::Result<()> {
    anyhow::bail!("reload by signal needs a Unix system; restart the gateway instead")
}
