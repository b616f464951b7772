//! Admission: whether a message may enter this node, outbound (a local
//! submission) or inbound (from a peer). Every rule that decides it lives
//! here, as values: a refusal names its rule, the JSON pointer it concerns
//! and the agreement or case state behind it. HTTP status codes are the
//! HTTP layer's business (`crate::http::error`).
//!
//! Admission runs in two steps: [`admit_outbound`] / [`admit_inbound`] judge
//! the message alone (schema, parties, agreement), before any I/O;
//! [`admit_in_case`] judges it against its case's history inside the store's
//! transaction (lifecycle, corrections), so two messages of one case are
//! never judged against the same stale history.
//!
//! (Over 600 lines because every rule is here, as the design asks, each
//! with its refusal's code and details; a fifth is tests.)

use serde_json::Value;

use super::agreement::{AgreementBook, AgreementError};
use super::consent::{self, Verdict};
use super::lifecycle::{self, CaseMessage, CaseState, LifecycleError};
use super::message::{Envelope, MessageError, SchemaRegistry};
use super::officer::{self, OfficerId};
use crate::protocol::Detail;

/// Where a payload names a border gate by its code (v2
/// `repatriation.request` and `repatriation.handover`): the schemas fix the
/// form of a code, the corridor's agreement which codes exist.
const GATE_POINTER: &str = "/gate";
const GATE_POINTER_IN_ENVELOPE: &str = "/payload/gate";

/// Why a message is not admitted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("a message must be a JSON object")]
    NotAnObject,
    #[error("{0}")]
    Schema(MessageError),
    /// A local system tried to send as another node.
    #[error("this gateway is {node}; it cannot send as {from}")]
    WrongSender { node: String, from: String },
    /// A peer sent under another node's name than its certificate's.
    #[error("the client certificate identifies node {sender}, but the envelope says from {from}")]
    SenderMismatch { sender: String, from: String },
    #[error("this gateway is {node}, the message is for {to}")]
    WrongReceiver { node: String, to: String },
    #[error("case {case_ref} does not belong to {from} and {to}")]
    CaseParties {
        case_ref: String,
        from: String,
        to: String,
    },
    #[error("{0}")]
    Agreement(AgreementError),
    #[error(
        "agreement `{agreement}` ({title}) does not allow sharing `{pointer}` in `{message_type}`"
    )]
    Withheld {
        agreement: String,
        title: String,
        message_type: String,
        /// Pointer into the payload.
        pointer: String,
    },
    /// The corridor's agreement does not use this schema version of the
    /// type (`[[messages]] versions`).
    #[error(
        "agreement `{agreement}` ({title}) uses `{message_type}` in schema version(s) {allowed:?}, not {version}"
    )]
    VersionNotAgreed {
        agreement: String,
        title: String,
        message_type: String,
        version: u32,
        allowed: Vec<u32>,
    },
    /// A gate code (v2 `gate`) the corridor's agreement does not list in
    /// its `[[gates]]`.
    #[error(
        "`{gate}` is not a border gate of agreement `{agreement}` ({title}); its gates: {allowed:?}"
    )]
    UnknownGate {
        agreement: String,
        title: String,
        gate: String,
        allowed: Vec<String>,
    },
    #[error("this gateway has no peer {peer} configured")]
    UnknownPeer { peer: String },
    /// The payload records that the person did not consent to sharing, and
    /// the agreement sends nothing without consent.
    #[error(
        "consent.to_share_information is false and agreement `{agreement}` sends no {message_type} without consent (consent.without = \"refuse\"); declare a lawful basis the agreement names, or record consent"
    )]
    ConsentWithheld {
        agreement: String,
        message_type: String,
    },
    /// A peer sent what its agreement withholds without consent.
    #[error(
        "consent.to_share_information is false, and agreement `{agreement}` does not let `{pointer}` cross without consent"
    )]
    ConsentViolation { agreement: String, pointer: String },
    #[error("{message}")]
    LawfulBasis { message: String },
    /// A consular mission sent a type its agreement does not let it send.
    #[error(
        "agreement `{agreement}` does not let a consular mission send {message_type} (embassy_may_send)"
    )]
    MissionNotAllowed {
        agreement: String,
        message_type: String,
    },
    /// `sent_by` is the sending gateway's to set, from who called.
    #[error("sent_by is set by the gateway from who submitted the message; leave it out")]
    SentByReserved,
    /// A mission acting on a case not of its nationals: as if there were none.
    #[error("case not found")]
    CaseNotVisible,
    /// The agreement (`require_officer`) wants every submission to name the
    /// officer behind it, and this one named none.
    #[error(
        "agreement `{agreement}` ({title}) requires the officer behind each submission: send the On-Behalf-Of header"
    )]
    OfficerRequired { agreement: String, title: String },
    #[error("{0}")]
    Lifecycle(LifecycleError),
    #[error("{0}")]
    Correction(CorrectionError),
    /// The id is taken by a different message.
    #[error("{}", if *.inbound {
        format!("message {message_id} was already received with different content")
    } else {
        format!("message_id {message_id} was already used for a different message; use a new id")
    })]
    DuplicateMessageId { message_id: String, inbound: bool },
    /// The sender's signature is missing where required, or does not hold
    /// (`bad_signature`, `unknown_signer`, `signer_revoked`,
    /// `signer_mismatch`, `signature_required`).
    #[error("{message}")]
    Signature { code: &'static str, message: String },
}

/// A `referral.update` with `reason: correction` that does not say what it
/// corrects, or names what is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrectionError {
    #[error("a correction must name the message it corrects (set in_reply_to)")]
    TargetRequired,
    #[error(
        "in_reply_to {in_reply_to} is not a message of case {case_ref}; a correction corrects a message of its own case"
    )]
    UnknownTarget {
        case_ref: String,
        in_reply_to: String,
    },
    #[error(
        "corrections[{index}].pointer `{pointer}` is not a field of message {target} (a `{target_type}`)"
    )]
    PointerAbsent {
        index: usize,
        pointer: String,
        target: String,
        target_type: String,
    },
}

impl Refusal {
    /// The stable machine-readable code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnObject => "schema_violation",
            Self::Schema(e) => e.code(),
            Self::WrongSender { .. } => "wrong_sender",
            Self::SenderMismatch { .. } => "sender_mismatch",
            Self::WrongReceiver { .. } => "wrong_receiver",
            Self::CaseParties { .. } => "case_ref_mismatch",
            Self::Agreement(_) => "agreement_refused",
            Self::Withheld { .. } => "personal_data_withheld",
            Self::VersionNotAgreed { .. } => "schema_version_not_agreed",
            Self::UnknownGate { .. } => "unknown_gate",
            Self::UnknownPeer { .. } => "unknown_peer",
            Self::OfficerRequired { .. } => "officer_required",
            Self::ConsentWithheld { .. } => "consent_withheld",
            Self::ConsentViolation { .. } => "consent_violation",
            Self::LawfulBasis { .. } => "lawful_basis_invalid",
            Self::MissionNotAllowed { .. } => "not_allowed_for_mission",
            Self::SentByReserved => "sent_by_reserved",
            Self::CaseNotVisible => "not_found",
            Self::Lifecycle(e) => e.code(),
            Self::Correction(CorrectionError::TargetRequired) => "correction_target_required",
            Self::Correction(CorrectionError::UnknownTarget { .. }) => "correction_target_unknown",
            Self::Correction(CorrectionError::PointerAbsent { .. }) => "correction_pointer_absent",
            Self::DuplicateMessageId { .. } => "duplicate_message_id",
            Self::Signature { code, .. } => code,
        }
    }

    /// Each problem, with its JSON pointer into the envelope and the rule.
    pub fn details(&self) -> Vec<Detail> {
        match self {
            Self::NotAnObject | Self::SenderMismatch { .. } | Self::WrongReceiver { .. } => {
                Vec::new()
            }
            Self::DuplicateMessageId { .. } | Self::Agreement(_) => Vec::new(),
            Self::Signature { .. } => vec![Detail {
                pointer: None,
                keyword: Some("signature".into()),
                message: "the Homeward-Signature header: a detached JWS over the exact body bytes"
                    .into(),
            }],
            Self::Schema(e) => e.details(),
            Self::WrongSender { node, .. } => {
                vec![Detail::at("/from", "this_node", format!("must be {node}"))]
            }
            Self::CaseParties { .. } => vec![Detail::at(
                "/case_ref",
                "case_parties",
                "the case reference must start with the two countries exchanging the message",
            )],
            Self::Withheld { pointer, .. } => vec![Detail::at(
                format!("/payload{pointer}"),
                "agreement_withheld",
                "remove this field: the agreement withholds it",
            )],
            Self::VersionNotAgreed {
                agreement, allowed, ..
            } => vec![Detail::at(
                "/schema_version",
                "agreement_versions",
                format!("agreement `{agreement}` allows schema version(s) {allowed:?}"),
            )],
            Self::UnknownGate {
                agreement, allowed, ..
            } => vec![Detail::at(
                GATE_POINTER_IN_ENVELOPE,
                "agreement_gates",
                format!(
                    "a gate code of agreement `{agreement}`: {}",
                    if allowed.is_empty() {
                        "it lists none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            )],
            Self::ConsentWithheld { .. } => vec![Detail::at(
                "/payload/consent/to_share_information",
                "consent",
                "the person did not consent to sharing",
            )],
            Self::ConsentViolation { pointer, .. } => vec![Detail::at(
                format!("/payload{pointer}"),
                "consent",
                "withheld without consent under the agreement",
            )],
            Self::MissionNotAllowed { .. } | Self::CaseNotVisible => Vec::new(),
            Self::SentByReserved => vec![Detail::at(
                "/sent_by",
                "sent_by",
                "set by the gateway, never by a submitter",
            )],
            Self::LawfulBasis { .. } => vec![Detail::at(
                "/payload/consent/lawful_basis",
                "lawful_basis",
                "a basis the agreement names, and that holds for this person",
            )],
            Self::OfficerRequired { .. } => vec![Detail {
                pointer: None,
                keyword: Some("require_officer".into()),
                message: format!("the On-Behalf-Of header: {}", officer::RULE),
            }],
            Self::UnknownPeer { peer } => vec![Detail::at(
                "/to",
                "configured_peer",
                format!("no peer {peer} in the configuration"),
            )],
            Self::Lifecycle(e) => {
                let (pointer, keyword) = match e {
                    LifecycleError::NotAllowed { .. } => ("/type", "case_state"),
                    LifecycleError::WrongSide { .. } => ("/from", "case_side"),
                    LifecycleError::Duplicate { .. } => ("/message_id", "unique"),
                    _ => ("/in_reply_to", "reply_target"),
                };
                vec![Detail::at(pointer, keyword, e.to_string())]
            }
            Self::Correction(e) => {
                let pointer = match e {
                    CorrectionError::PointerAbsent { index, .. } => {
                        format!("/payload/corrections/{index}/pointer")
                    }
                    _ => "/in_reply_to".to_string(),
                };
                vec![Detail::at(pointer, "correction_target", e.to_string())]
            }
        }
    }
}

/// What admission needs to know of this node.
#[derive(Debug, Clone)]
pub struct Admission<'a> {
    /// This node's country.
    pub country: &'a str,
    pub registry: &'a SchemaRegistry,
    pub agreements: std::sync::Arc<AgreementBook>,
}

impl Admission<'_> {
    /// The consent rule of the agreement with `envelope.to` applied to an
    /// envelope this node sends: as it is, on a lawful basis, reduced, or
    /// refused. `case_withheld`: the case's consent stands withdrawn
    /// ([`consent::case_withheld`] of its history).
    pub fn consent_outbound(
        &self,
        envelope: &Envelope,
        case_withheld: bool,
    ) -> Result<Verdict, Refusal> {
        match self.consent_verdict(envelope, &envelope.to, case_withheld)? {
            Some((agreement, Verdict::Refused)) => Err(Refusal::ConsentWithheld {
                agreement: agreement.to_string(),
                message_type: envelope.message_type.clone(),
            }),
            Some((_, verdict)) => Ok(verdict),
            None => Ok(Verdict::Shared),
        }
    }

    /// The same rule applied to an envelope from a peer: what the sender
    /// should have withheld is refused, not stored.
    pub fn consent_inbound(&self, envelope: &Envelope, case_withheld: bool) -> Result<(), Refusal> {
        let Some((agreement, verdict)) =
            self.consent_verdict(envelope, &envelope.from, case_withheld)?
        else {
            return Ok(());
        };
        let pointer = match verdict {
            Verdict::Shared | Verdict::Basis(_) => return Ok(()),
            Verdict::Refused => Some("/consent/to_share_information".to_string()),
            Verdict::Minimal(patterns) => consent::carried(&envelope.payload, &patterns),
        };
        match pointer {
            Some(pointer) => Err(Refusal::ConsentViolation {
                agreement: agreement.to_string(),
                pointer,
            }),
            None => Ok(()),
        }
    }

    /// The verdict of the agreement with `peer` on `envelope`, and that
    /// agreement's id; `None` without an agreement or when consent stands
    /// (the common case: no schema walk for the personal fields then).
    fn consent_verdict(
        &self,
        envelope: &Envelope,
        peer: &str,
        case_withheld: bool,
    ) -> Result<Option<(&str, Verdict)>, Refusal> {
        let Some(agreement) = self.agreements.between(self.country, peer) else {
            return Ok(None);
        };
        if !consent::applies(&envelope.payload, case_withheld) {
            return Ok(None);
        }
        let personal = self.registry.personal_pointers(&envelope.message_type);
        let verdict = agreement
            .consent
            .judge(
                &agreement.id,
                &envelope.message_type,
                &envelope.payload,
                &personal,
                case_withheld,
            )
            .map_err(|e| Refusal::LawfulBasis {
                message: e.to_string(),
            })?;
        Ok(Some((agreement.id.as_str(), verdict)))
    }

    /// A message its sender's consular mission sent (`sent_by: mission`)
    /// must be of a type the agreement with `peer` lets a mission send.
    pub fn mission_may_send(&self, envelope: &Envelope, peer: &str) -> Result<(), Refusal> {
        if envelope.sent_by.as_deref() != Some("mission") {
            return Ok(());
        }
        match self.agreements.between(self.country, peer) {
            Some(a) if a.embassy_may_send.contains(&envelope.message_type) => Ok(()),
            other => Err(Refusal::MissionNotAllowed {
                agreement: other.map_or_else(|| "(none)".to_string(), |a| a.id.clone()),
                message_type: envelope.message_type.clone(),
            }),
        }
    }

    /// An envelope from `sender` that carries no signature: taken from a
    /// peer that does not sign yet, refused once their agreement says both
    /// sides sign.
    pub fn unsigned_from(&self, sender: &str) -> Result<(), Refusal> {
        match self.agreements.between(self.country, sender) {
            Some(a) if a.signing_required => Err(Refusal::Signature {
                code: "signature_required",
                message: format!(
                    "agreement {} requires every envelope to be signed; this one carries no signature",
                    a.id
                ),
            }),
            _ => Ok(()),
        }
    }

    /// A submission from this country's systems, on behalf of `officer` if
    /// the caller named one: schema-valid, sent as this node, between the
    /// case's two countries, allowed by their agreement (which may require
    /// the officer), to a configured peer.
    pub fn admit_outbound(
        &self,
        doc: Value,
        officer: Option<&OfficerId>,
        peer_configured: impl Fn(&str) -> bool,
    ) -> Result<Envelope, Refusal> {
        if !doc.is_object() {
            return Err(Refusal::NotAnObject);
        }
        let envelope = self.validate(doc)?;
        if envelope.from != self.country {
            return Err(Refusal::WrongSender {
                node: self.country.to_string(),
                from: envelope.from.clone(),
            });
        }
        self.check_exchange(&envelope)?;
        if officer.is_none()
            && let Some(agreement) = self.agreements.between(&envelope.from, &envelope.to)
            && agreement.require_officer
        {
            return Err(Refusal::OfficerRequired {
                agreement: agreement.id.clone(),
                title: agreement.title.clone(),
            });
        }
        if !peer_configured(&envelope.to) {
            return Err(Refusal::UnknownPeer {
                peer: envelope.to.clone(),
            });
        }
        Ok(envelope)
    }

    /// A message from `sender` (the node its TLS certificate names): the
    /// same rules as a submission, and it must come from that node to this
    /// one. The receiver does not trust the sender to have checked.
    pub fn admit_inbound(&self, sender: &str, doc: Value) -> Result<Envelope, Refusal> {
        let envelope = self.validate(doc)?;
        if envelope.from != sender {
            return Err(Refusal::SenderMismatch {
                sender: sender.to_string(),
                from: envelope.from.clone(),
            });
        }
        if envelope.to != self.country {
            return Err(Refusal::WrongReceiver {
                node: self.country.to_string(),
                to: envelope.to.clone(),
            });
        }
        self.check_exchange(&envelope)?;
        Ok(envelope)
    }

    /// Every problem `POST /v1/validate` reports for a message as this node
    /// would receive it for submission (schema, case parties, agreement).
    pub fn problems(&self, doc: &Value) -> Vec<Detail> {
        let envelope = match self.registry.validate(doc) {
            Ok(e) => e,
            Err(e) => return e.details(),
        };
        let mut problems = Vec::new();
        if let Err(e) = case_parties(&envelope) {
            problems.extend(e.details());
        }
        if let Err(e) = self.agreement(&envelope) {
            let details = e.details();
            if details.is_empty() {
                problems.push(Detail::at("/type", "agreement", e.to_string()));
            } else {
                problems.extend(details);
            }
        }
        problems
    }

    fn validate(&self, doc: Value) -> Result<Envelope, Refusal> {
        self.registry.validate_owned(doc).map_err(Refusal::Schema)
    }

    fn check_exchange(&self, envelope: &Envelope) -> Result<(), Refusal> {
        case_parties(envelope)?;
        self.agreement(envelope)
    }

    /// The agreement between sender and receiver must allow the type in
    /// this direction and in this schema version, a gate the payload names
    /// must be one of its gates, and the payload must not carry a personal
    /// field it withholds.
    fn agreement(&self, envelope: &Envelope) -> Result<(), Refusal> {
        let agreement = self
            .agreements
            .permit(&envelope.from, &envelope.to, &envelope.message_type)
            .map_err(Refusal::Agreement)?;
        let versions = agreement.versions(&envelope.message_type);
        if !versions.contains(&envelope.schema_version) {
            return Err(Refusal::VersionNotAgreed {
                agreement: agreement.id.clone(),
                title: agreement.title.clone(),
                message_type: envelope.message_type.clone(),
                version: envelope.schema_version,
                allowed: versions.to_vec(),
            });
        }
        if let Some(gate) = envelope
            .payload
            .pointer(GATE_POINTER)
            .and_then(Value::as_str)
            && agreement.gate(gate).is_none()
        {
            return Err(Refusal::UnknownGate {
                agreement: agreement.id.clone(),
                title: agreement.title.clone(),
                gate: gate.to_string(),
                allowed: agreement.gates().iter().map(|g| g.code.clone()).collect(),
            });
        }
        if let Some(pointer) = agreement.withheld_in(&envelope.message_type, &envelope.payload) {
            return Err(Refusal::Withheld {
                agreement: agreement.id.clone(),
                title: agreement.title.clone(),
                message_type: envelope.message_type.clone(),
                pointer: pointer.to_string(),
            });
        }
        Ok(())
    }
}

/// The case reference names the two countries of the case; a message of
/// the case must travel between those two.
fn case_parties(envelope: &Envelope) -> Result<(), Refusal> {
    if envelope
        .case()
        .is_some_and(|c| c.is_between(&envelope.from, &envelope.to))
    {
        return Ok(());
    }
    Err(Refusal::CaseParties {
        case_ref: envelope.case_ref.clone(),
        from: envelope.from.clone(),
        to: envelope.to.clone(),
    })
}

/// Judges `message` against its case's `history` (oldest first): the
/// corrections rule, then the lifecycle. Returns the state the case moves
/// to. Runs inside the transaction that stores the message.
pub fn admit_in_case(
    case_ref: &str,
    history: &[CaseMessage],
    message: &CaseMessage,
) -> Result<CaseState, Refusal> {
    check_correction(case_ref, history, message).map_err(Refusal::Correction)?;
    let state = lifecycle::replay(case_ref, history);
    lifecycle::next_state(case_ref, state, message, history).map_err(Refusal::Lifecycle)
}

/// Whether `message` is a correction (`referral.update`, reason `correction`).
pub fn is_correction(message: &CaseMessage) -> bool {
    message.message_type == "referral.update" && message.payload["reason"] == "correction"
}

/// A correction names the message it corrects, of its own case, and every
/// corrected pointer is a field of that message's payload.
fn check_correction(
    case_ref: &str,
    history: &[CaseMessage],
    message: &CaseMessage,
) -> Result<(), CorrectionError> {
    if !is_correction(message) {
        return Ok(());
    }
    let Some(target_id) = &message.in_reply_to else {
        return Err(CorrectionError::TargetRequired);
    };
    let Some(target) = history.iter().find(|h| &h.message_id == target_id) else {
        return Err(CorrectionError::UnknownTarget {
            case_ref: case_ref.to_string(),
            in_reply_to: target_id.clone(),
        });
    };
    let corrections = message.payload["corrections"].as_array();
    for (index, c) in corrections.into_iter().flatten().enumerate() {
        let pointer = c["pointer"].as_str().unwrap_or_default();
        if target.payload.pointer(pointer).is_none() {
            return Err(CorrectionError::PointerAbsent {
                index,
                pointer: pointer.to_string(),
                target: target.message_id.clone(),
                target_type: target.message_type.clone(),
            });
        }
    }
    Ok(())
}

/// `target`'s payload with every correction in `history` that names it
/// applied, oldest first; `None` when nothing corrects it.
pub fn corrected_payload(target: &CaseMessage, history: &[CaseMessage]) -> Option<Value> {
    let mut corrected: Option<Value> = None;
    for m in history
        .iter()
        .filter(|m| is_correction(m) && m.in_reply_to.as_deref() == Some(&target.message_id))
    {
        let doc = corrected.get_or_insert_with(|| (*target.payload).clone());
        for c in m.payload["corrections"].as_array().into_iter().flatten() {
            if let Some(slot) = c["pointer"].as_str().and_then(|p| doc.pointer_mut(p)) {
                *slot = c["value"].clone();
            }
        }
    }
    corrected
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn msg(id: &str, t: &str, reply: Option<&str>, payload: Value) -> CaseMessage {
        CaseMessage {
            message_id: id.into(),
            message_type: t.into(),
            from: "TH".into(),
            in_reply_to: reply.map(str::to_string),
            payload: Arc::new(payload),
            from_mission: false,
        }
    }

    fn notify() -> CaseMessage {
        msg(
            "n1",
            "referral.notify",
            None,
            json!({"person": {"home_address": {"commune": "Old"}}}),
        )
    }

    fn correction(reply: Option<&str>, pointer: &str) -> CaseMessage {
        msg(
            "u1",
            "referral.update",
            reply,
            json!({"reason": "correction", "summary": "s",
                   "corrections": [{"pointer": pointer, "value": "New"}]}),
        )
    }

    /// The shipped agreements, KH–TH's text passed through `edit`.
    fn shipped(edit: impl Fn(String) -> String) -> (tempfile::TempDir, Arc<AgreementBook>) {
        let registry = SchemaRegistry::embedded().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/agreements");
        for entry in std::fs::read_dir(shipped).unwrap() {
            let path = entry.unwrap().path();
            let mut text = std::fs::read_to_string(&path).unwrap();
            if path.file_name().unwrap() == "kh-th.toml" {
                text = edit(text);
            }
            std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
        }
        let book = AgreementBook::load(dir.path(), &registry).unwrap();
        (dir, Arc::new(book))
    }

    fn example(path: &str) -> Value {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas/examples")
            .join(path);
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
    }

    /// Admission of `doc` (TH to KH) at TH, outbound, and at KH, inbound.
    fn both_sides(book: &Arc<AgreementBook>, doc: &Value) -> [Result<Envelope, Refusal>; 2] {
        let registry = SchemaRegistry::embedded().unwrap();
        let at = |country| Admission {
            country,
            registry: &registry,
            agreements: book.clone(),
        };
        [
            at("TH").admit_outbound(doc.clone(), None, |_| true),
            at("KH").admit_inbound("TH", doc.clone()),
        ]
    }

    const REQUEST_V2: &str = "repatriation.request/v2/valid-poipet-through-the-embassy.json";

    #[test]
    fn both_versions_pass_by_default_and_a_gate_must_be_the_agreements() {
        let (_dir, book) = shipped(|t| t);
        let v1 = example("repatriation.request/valid-land-poipet.json");
        let v2 = example(REQUEST_V2);
        assert_eq!(v2["payload"]["gate"], "POIPET");
        for doc in [&v1, &v2] {
            for r in both_sides(&book, doc) {
                let e = r.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(e.schema_version, doc["schema_version"]);
            }
        }
        // A gate of another corridor (KH–VN's), well-formed: refused on
        // both sides, naming the agreement and its gates.
        let mut elsewhere = v2.clone();
        elsewhere["payload"]["gate"] = json!("BAVET");
        for r in both_sides(&book, &elsewhere) {
            let e = r.unwrap_err();
            assert_eq!(e.code(), "unknown_gate");
            assert!(matches!(&e, Refusal::UnknownGate { gate, .. } if gate == "BAVET"));
            let text = e.to_string();
            assert!(
                text.contains("kh-th") && text.contains(r#"["POIPET", "CHAM_YEAM", "PNH_BKK"]"#),
                "{text}"
            );
            let d = &e.details()[0];
            assert_eq!(d.pointer.as_deref(), Some("/payload/gate"));
            assert!(
                d.message.contains("POIPET, CHAM_YEAM, PNH_BKK"),
                "{}",
                d.message
            );
        }
        // `POST /v1/validate` reports it too.
        let registry = SchemaRegistry::embedded().unwrap();
        let th = Admission {
            country: "TH",
            registry: &registry,
            agreements: book.clone(),
        };
        let problems = th.problems(&elsewhere);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].pointer.as_deref(), Some("/payload/gate"));
        assert!(th.problems(&v2).is_empty());
    }

    #[test]
    fn a_version_the_agreement_does_not_pin_is_refused_on_both_sides() {
        let (_dir, book) = shipped(|t| {
            assert!(t.contains("deadline = \"14 days\"\n"));
            t.replace(
                "deadline = \"14 days\"\n",
                "deadline = \"14 days\"\nversions = [1]\n",
            )
        });
        let ag = book.between("KH", "TH").unwrap();
        assert_eq!(ag.versions("repatriation.request"), [1]);
        assert_eq!(ag.versions("repatriation.handover"), [1, 2]);
        let v1 = example("repatriation.request/valid-land-poipet.json");
        for r in both_sides(&book, &v1) {
            assert!(r.is_ok());
        }
        for r in both_sides(&book, &example(REQUEST_V2)) {
            let e = r.unwrap_err();
            assert_eq!(e.code(), "schema_version_not_agreed");
            assert!(matches!(
                &e,
                Refusal::VersionNotAgreed { version: 2, allowed, .. } if allowed == &[1]
            ));
            assert!(e.to_string().contains("kh-th"), "{e}");
            let d = &e.details()[0];
            assert_eq!(d.pointer.as_deref(), Some("/schema_version"));
            assert!(d.message.contains("[1]"), "{}", d.message);
        }
    }

    #[test]
    fn a_corridor_without_gates_refuses_every_gate() {
        let (_dir, book) = shipped(|t| t.split("\n[[gates]]").next().unwrap().to_string());
        assert!(book.between("KH", "TH").unwrap().gates().is_empty());
        for r in both_sides(&book, &example(REQUEST_V2)) {
            let e = r.unwrap_err();
            assert_eq!(e.code(), "unknown_gate");
            assert!(e.details()[0].message.contains("it lists none"));
        }
    }

    #[test]
    fn a_v1_message_counts_as_unknown_for_the_v2_fields() {
        use crate::domain::message::added_field;
        let v1 = example("repatriation.request/valid-land-poipet.json");
        let v2 = example(REQUEST_V2);
        assert_eq!(added_field(&v1["payload"], "gate"), "unknown");
        assert_eq!(added_field(&v1["payload"], "return_channel"), "unknown");
        assert_eq!(added_field(&v2["payload"], "gate"), "POIPET");
        assert_eq!(added_field(&v2["payload"], "return_channel"), "embassy");
    }

    #[test]
    fn a_correction_names_an_existing_field_of_a_message_of_its_case() {
        let case = "TH-KH-2026-000001";
        let history = [notify()];
        let ok = correction(Some("n1"), "/person/home_address/commune");
        assert!(check_correction(case, &history, &ok).is_ok());
        assert_eq!(
            check_correction(case, &history, &correction(None, "/person")),
            Err(CorrectionError::TargetRequired)
        );
        assert!(matches!(
            check_correction(case, &history, &correction(Some("other"), "/person")),
            Err(CorrectionError::UnknownTarget { .. })
        ));
        let absent = correction(Some("n1"), "/person/home_address/village");
        let e = check_correction(case, &history, &absent).unwrap_err();
        assert!(matches!(e, CorrectionError::PointerAbsent { index: 0, .. }));
        assert_eq!(
            Refusal::Correction(e).details()[0].pointer.as_deref(),
            Some("/payload/corrections/0/pointer")
        );
    }

    #[test]
    fn other_updates_need_no_target() {
        let update = msg(
            "u2",
            "referral.update",
            None,
            json!({"reason": "other", "summary": "s"}),
        );
        assert!(check_correction("TH-KH-2026-000001", &[notify()], &update).is_ok());
    }

    #[test]
    fn corrections_apply_in_order_and_keep_the_original() {
        let original = notify();
        let mut second = correction(Some("n1"), "/person/home_address/commune");
        second.message_id = "u2".into();
        Arc::make_mut(&mut second.payload)["corrections"][0]["value"] = json!("Newer");
        let history = [
            original.clone(),
            correction(Some("n1"), "/person/home_address/commune"),
            second,
        ];
        let corrected = corrected_payload(&original, &history).unwrap();
        assert_eq!(corrected["person"]["home_address"]["commune"], "Newer");
        assert_eq!(original.payload["person"]["home_address"]["commune"], "Old");
        assert!(corrected_payload(&history[1], &history).is_none());
    }
}
