//! A peer withdrew a person's consent to sharing (a `referral.update` with
//! `consent.to_share_information: false`): what this node received in the
//! case is reduced to what the agreement allows without consent (nothing
//! personal under `refuse`, the `minimal` fields under `minimal`), and the
//! reduction is audited. Later messages of the case follow the rule at
//! admission (`domain::consent::case_withheld`).

use tracing::info;

use super::node::Node;
use crate::domain::consent;
use crate::store::audit::AuditEntry;
use crate::store::{NewInbound, StoreError};

/// Reduces the payloads received in `new`'s case after `new` withdrew consent.
pub async fn reduce_received(
    node: &Node,
    sender: &str,
    new: &NewInbound,
) -> Result<(), StoreError> {
    let agreements = node.agreements();
    let Some(agreement) = agreements.between(&node.country, sender) else {
        return Ok(());
    };
    let now = node.clock.now_ms();
    let changed = node
        .store
        .withdraw_consent(
            &new.case_ref,
            &new.message_id,
            now,
            |message_type, payload| {
                let personal = node.registry.personal_pointers(message_type);
                let patterns = agreement.consent.withheld_patterns(message_type, &personal);
                let required = node.registry.required_pointers(message_type);
                !consent::reduce(payload, &patterns, &required).is_empty()
            },
        )
        .await?;
    info!(
        reduced = changed,
        "consent withdrawn: received payloads reduced"
    );
    node.store
        .audit(&[AuditEntry {
            at: now,
            actor: format!("peer {sender}"),
            role: "peer".into(),
            action: "consent.withdrawn".into(),
            case_ref: Some(new.case_ref.clone()),
            message_id: Some(new.message_id.clone()),
            result: format!("ok ({changed} received payloads reduced)"),
            officer: None,
        }])
        .await
}
