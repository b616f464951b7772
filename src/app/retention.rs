//! The retention job: purges the payloads of cases closed or withdrawn
//! longer ago than their agreement's retention period, at start and then
//! daily (what is kept and why: `crate::store::retention`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::node::Node;

/// Runs until `shutdown`.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        let now = node.clock.now_ms();
        match crate::store::retention::purge(&node.store, now, false, |c| {
            node.agreements().retention_days_of(c)
        })
        .await
        {
            Ok(purged) => {
                for c in &purged {
                    info!(case_ref = %c.case_ref, state = %c.state, "payloads purged after the retention period");
                }
            }
            Err(e) => warn!(error = %e, "retention purge failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
        }
    }
}
