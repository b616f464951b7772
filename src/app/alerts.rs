//! The operator webhook: case events marked as alerts (reminders, breaches,
//! dead messages) are posted to the configured URL, retried with backoff;
//! it runs on its own so a slow webhook never holds up delivery.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::node::Node;
use super::timers::MAX_SLEEP;

/// Sends pending case events to the operator webhook, retrying with
/// backoff; runs on its own so a slow webhook never holds up delivery.
pub struct Alerter {
    node: Arc<Node>,
    client: Option<(reqwest::Client, String)>,
}

/// Attempts before an alert is given up (and logged as failed).
const ALERT_ATTEMPTS: i64 = 12;

/// Why the webhook client cannot be built (the gateway runs without it).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts.webhook_ca: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("webhook client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Alerter {
    pub fn new(node: Arc<Node>) -> Result<Self, AlertError> {
        let client = match &node.settings.alerts.webhook_url {
            None => None,
            Some(url) => {
                let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
                if let Some(ca) = &node.settings.alerts.webhook_ca {
                    let certs = crate::tls::load_certs(ca)?;
                    let config = crate::tls::api_client_config(&certs)?;
                    builder = builder.use_preconfigured_tls(config);
                } else {
                    let config = crate::tls::system_client_config()?;
                    builder = builder.use_preconfigured_tls(config);
                }
                Some((builder.build()?, url.clone()))
            }
        };
        Ok(Self { node, client })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let Some((client, url)) = &self.client else {
            return;
        };
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let now = self.node.clock.now_ms();
            match self.node.store.pending_alerts(now, 100).await {
                Ok(alerts) => {
                    for a in alerts {
                        let body = json!({
                            "node": self.node.country,
                            "event": a.kind,
                            "case_ref": a.case_ref,
                            "message_id": a.message_id,
                            "at": crate::clock::rfc3339_ms(a.at),
                            "detail": a.detail,
                        });
                        let ok = client
                            .post(url)
                            .json(&body)
                            .send()
                            .await
                            .map(|r| r.status().is_success())
                            .unwrap_or(false);
                        let retry = (!ok && a.alert_attempts + 1 < ALERT_ATTEMPTS).then(|| {
                            let delay = 1000i64 << a.alert_attempts.clamp(0, 9);
                            self.node.clock.now_ms() + delay.min(600_000)
                        });
                        if !ok && retry.is_none() {
                            error!(case_ref = %a.case_ref, event = %a.kind, "operator webhook failed; alert given up");
                        }
                        if let Err(e) = self.node.store.mark_alert(a.id, ok, retry).await {
                            error!(error = %e, "cannot record an alert attempt");
                        }
                    }
                }
                Err(e) => error!(error = %e, "cannot read pending alerts"),
            }
            let wait = match self.node.store.next_alert_at().await {
                Ok(Some(at)) => {
                    Duration::from_millis((at - self.node.clock.now_ms()).max(0) as u64)
                        .min(MAX_SLEEP)
                }
                _ => MAX_SLEEP,
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.node.alert_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
