//! Reconciliation with a peer: this node's tally of a corridor and period
//! beside the peer's, asked over the peer API and checked against the
//! peer's signature; the cells that differ are asked again with their
//! message ids, so the comparison names what one side holds and the other
//! does not.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::Settings;
use crate::credentials::Credentials;
use crate::domain::agreement::AgreementBook;
use crate::domain::facts::corridor;
use crate::domain::reconcile::ReconcileRequest;
use crate::domain::reconcile::{self, CellKey, Comparison, Tally};
use crate::domain::statistics::{Query, QueryError};
use crate::protocol::{RECONCILE_PATH, SIGNATURE_HEADER};
use crate::signing::{Purpose, SignatureError};
use crate::store::{Store, StoreError};

/// Most cells one request may ask the ids of.
pub const MAX_EXPAND: usize = 1000;

/// Why this node cannot tally: a bad period, or its store.
#[derive(Debug, thiserror::Error)]
pub enum TallyError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Tally(#[from] TallyError),
    #[error("{0} is not a peer of this node (no [[peers]] entry)")]
    NotAPeer(String),
    #[error("no agreement between {0} and {1}: there is no corridor to reconcile")]
    NoAgreement(String, String),
    #[error("cannot reach {peer} at {url}: {message}")]
    Unreachable {
        peer: String,
        url: String,
        message: String,
    },
    #[error("{peer} refused the reconciliation ({status}): {body}")]
    Refused {
        peer: String,
        status: u16,
        body: String,
    },
    #[error("{peer}'s tally does not hold: {message}")]
    BadAnswer { peer: String, message: String },
    #[error("{peer}'s tally is not signed as it must be: {0}", peer = .1)]
    Signature(SignatureError, String),
    #[error("{peer}'s tally carries no signature, and agreement {agreement} requires signatures")]
    Unsigned { peer: String, agreement: String },
}

/// This node's tally of its corridor with `peer` over `request`'s period.
pub async fn tally(
    store: &Store,
    node: &str,
    peer: &str,
    request: &ReconcileRequest,
) -> Result<Tally, TallyError> {
    let query = Query::parse(None, Some(&request.from), Some(&request.to), None, 1)?;
    let span = query.span_ms();
    let corridor = corridor(node, peer);
    let facts = store
        .facts_of_period(span.0, span.1, Some(&corridor))
        .await?;
    let expand: BTreeSet<CellKey> = request.expand.iter().cloned().collect();
    Ok(reconcile::tally(
        node,
        &corridor,
        (&query.from.to_string(), &query.to.to_string()),
        &facts,
        span,
        &expand,
    ))
}

/// What a reconciliation found, and whether the peer's tally was signed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub node: String,
    pub peer: String,
    /// The peer signed its tally and the signature held.
    pub signed: bool,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// Reconciles this node's corridor with `peer` over `from`..`to`.
pub async fn with_peer(
    settings: &Settings,
    credentials: &Credentials,
    agreements: &AgreementBook,
    store: &Store,
    peer: &str,
    (from, to): (&str, &str),
) -> Result<Outcome, ReconcileError> {
    let node = settings.node.country.as_str();
    let peer_settings = settings
        .peer(peer)
        .ok_or_else(|| ReconcileError::NotAPeer(peer.to_string()))?;
    let agreement = agreements
        .between(node, peer)
        .ok_or_else(|| ReconcileError::NoAgreement(node.to_string(), peer.to_string()))?;
    let url = reqwest::Url::parse(&peer_settings.base_url)
        .and_then(|b| b.join(RECONCILE_PATH))
        .map_err(|e| ReconcileError::Unreachable {
            peer: peer.to_string(),
            url: peer_settings.base_url.clone(),
            message: format!("base_url: {e}"),
        })?;
    let unreachable = |message: String| ReconcileError::Unreachable {
        peer: peer.to_string(),
        url: url.to_string(),
        message,
    };
    let tls = crate::tls::peer_client_config(
        Some(&credentials.identity),
        credentials.cas_of(peer),
        credentials.crls_of(peer),
        peer,
    )
    .map_err(|e| unreachable(e.to_string()))?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // A peer that is down is an answer within seconds, not a hang.
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut signed = true;
    let mut ask = async |expand: Vec<CellKey>| -> Result<Tally, ReconcileError> {
        let request = ReconcileRequest {
            from: from.to_string(),
            to: to.to_string(),
            expand,
        };
        let response = client
            .post(url.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let signature = response
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if !status.is_success() {
            return Err(ReconcileError::Refused {
                peer: peer.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        match signature {
            Some(jws) => {
                credentials
                    .verifier
                    .verify_now(
                        &jws,
                        Purpose::Reconcile,
                        &body,
                        credentials.cas_of(peer),
                        credentials.crls_of(peer),
                        peer,
                    )
                    .map_err(|e| ReconcileError::Signature(e, peer.to_string()))?;
            }
            None if agreement.signing_required => {
                return Err(ReconcileError::Unsigned {
                    peer: peer.to_string(),
                    agreement: agreement.id.clone(),
                });
            }
            None => signed = false,
        }
        let theirs: Tally =
            serde_json::from_slice(&body).map_err(|e| ReconcileError::BadAnswer {
                peer: peer.to_string(),
                message: e.to_string(),
            })?;
        if theirs.node != peer || theirs.corridor != corridor(node, peer) {
            return Err(ReconcileError::BadAnswer {
                peer: peer.to_string(),
                message: format!(
                    "it counts corridor {} as node {}, not {} as {peer}",
                    theirs.corridor,
                    theirs.node,
                    corridor(node, peer)
                ),
            });
        }
        Ok(theirs)
    };
    let first = ReconcileRequest {
        from: from.to_string(),
        to: to.to_string(),
        expand: Vec::new(),
    };
    let ours = tally(store, node, peer, &first).await?;
    let theirs = ask(Vec::new()).await?;
    if (&theirs.from, &theirs.to) != (&ours.from, &ours.to) {
        return Err(ReconcileError::BadAnswer {
            peer: peer.to_string(),
            message: format!(
                "it counts {}..{}, not {}..{}",
                theirs.from, theirs.to, ours.from, ours.to
            ),
        });
    }
    let differing: Vec<CellKey> = reconcile::to_expand(&ours, &theirs).into_iter().collect();
    let comparison = if differing.is_empty() {
        reconcile::compare(&ours, &theirs)
    } else {
        let mut ours = ours;
        let mut theirs = theirs;
        for chunk in differing.chunks(MAX_EXPAND) {
            let request = ReconcileRequest {
                expand: chunk.to_vec(),
                ..first.clone()
            };
            let o = tally(store, node, peer, &request).await?;
            let t = ask(chunk.to_vec()).await?;
            merge_ids(&mut ours, o);
            merge_ids(&mut theirs, t);
        }
        reconcile::compare(&ours, &theirs)
    };
    Ok(Outcome {
        node: node.to_string(),
        peer: peer.to_string(),
        signed,
        comparison,
    })
}

/// Carries the ids an expanded tally lists into the first tally's cells.
fn merge_ids(into: &mut Tally, expanded: Tally) {
    for cell in expanded.cells.into_iter().filter(|c| c.ids.is_some()) {
        match into.cells.iter_mut().find(|c| c.key == cell.key) {
            Some(c) => *c = cell,
            None => into.cells.push(cell),
        }
    }
}

/// An error and its causes (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
