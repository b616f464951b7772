//! New certificates, keys, CAs, CRLs and agreements without a restart: on
//! `SIGHUP`, `homeward reload`, or when the watch sees a file change. The
//! whole set is loaded first and put in force only if every file holds;
//! otherwise the material in force stays, and the refusal is logged and
//! counted. New connections and requests use the new set; those in flight
//! finish under the old one.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::node::Node;
use crate::credentials::{self, Credentials, Fingerprint};
use crate::domain::agreement::{AgreementBook, AgreementLoadError};
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Agreement(#[from] AgreementLoadError),
    #[error(
        "agreement {agreement} requires signatures ([signing] required = true), but tls.sign_cert and tls.sign_key are not set"
    )]
    SignerRequired { agreement: String },
}

/// Refuses a set in which an agreement of this node requires signatures
/// that this node could not make.
pub fn check_signing(
    country: &str,
    agreements: &AgreementBook,
    credentials: &Credentials,
) -> Result<(), ReloadError> {
    if credentials.signer.is_some() {
        return Ok(());
    }
    match agreements
        .all()
        .iter()
        .find(|a| a.signing_required && a.parties.iter().any(|p| p == country))
    {
        Some(a) => Err(ReloadError::SignerRequired {
            agreement: a.id.clone(),
        }),
        None => Ok(()),
    }
}

/// Rereads every file and puts the new set in force, or keeps the old one
/// and says why.
pub fn reload(node: &Node, why: &str) -> Result<(), ReloadError> {
    let loaded = load(node);
    match loaded {
        Ok((credentials, agreements)) => {
            node.metrics.certificates(
                credentials
                    .expiry
                    .iter()
                    .map(|e| (e.which.as_str(), e.not_after)),
            );
            node.install(credentials, agreements);
            node.metrics.reloaded("ok");
            info!(
                why,
                "reloaded certificates, keys, CRLs and agreements; new connections use them"
            );
            Ok(())
        }
        Err(e) => {
            node.metrics.reloaded("refused");
            error!(why, error = %e, "reload refused; the material in force stays");
            Err(e)
        }
    }
}

fn load(node: &Node) -> Result<(Credentials, AgreementBook), ReloadError> {
    let credentials = Credentials::load(&node.settings)?;
    let agreements = AgreementBook::load(&node.settings.agreements.dir, &node.registry)?;
    check_signing(&node.country, &agreements, &credentials)?;
    Ok((credentials, agreements))
}

/// Reloads whenever a watched file changes, every `tls.watch_interval_ms`
/// (a CA publishes a new CRL; an operator replaces a certificate). A set
/// that was refused is not tried again until a file changes again.
pub async fn watch(node: Arc<Node>, shutdown: CancellationToken) {
    let Some(every) = node.settings.tls.watch_interval() else {
        return;
    };
    let mut refused: Option<Fingerprint> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let files = credentials::watched_files(&node.settings);
        let Ok(now) = tokio::task::spawn_blocking(move || Fingerprint::of(&files)).await else {
            continue;
        };
        let in_force = node.credentials().fingerprint.clone();
        if now == in_force || refused.as_ref() == Some(&now) {
            continue;
        }
        let changed = now.changed_since(&in_force);
        let why = format!(
            "changed: {}",
            changed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let node2 = node.clone();
        let result = tokio::task::spawn_blocking(move || reload(&node2, &why)).await;
        refused = match result {
            Ok(Ok(())) => None,
            _ => Some(now),
        };
    }
}
