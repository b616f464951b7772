//! The case lifecycle (DESIGN.md): a case's state is derived from the
//! messages exchanged, by both gateways, and every new message is checked
//! against it. A message that makes no sense in the case's state is refused
//! with the state and the types allowed next.
//!
//! (Over 600 lines because a third is the tests of every transition, kept
//! beside the one table they test.)
//!
//! ```text
//! referred ─► acknowledged ─► tracing ─► traced ─► repatriation_proposed ─► repatriation_agreed ─► handed_over ─► following_up ─► closed
//!     └──────────────┴────────────┴─────────┴───────────────┴───────────────────────┴──────► withdrawn
//! ```
//!
//! Return may proceed while family tracing is still open, so a repatriation
//! request is allowed from `acknowledged`, `tracing` and `traced`, and
//! tracing messages are accepted (without moving the state back) during the
//! repatriation stages.
//!
//! The file is over 600 lines because the tests of every path through the
//! transition table (about 250 lines) sit beside the table they check.

use serde::Serialize;
use serde_json::Value;

use super::message::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Referred,
    Acknowledged,
    Tracing,
    Traced,
    RepatriationProposed,
    RepatriationAgreed,
    HandedOver,
    FollowingUp,
    Closed,
    Withdrawn,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referred => "referred",
            Self::Acknowledged => "acknowledged",
            Self::Tracing => "tracing",
            Self::Traced => "traced",
            Self::RepatriationProposed => "repatriation_proposed",
            Self::RepatriationAgreed => "repatriation_agreed",
            Self::HandedOver => "handed_over",
            Self::FollowingUp => "following_up",
            Self::Closed => "closed",
            Self::Withdrawn => "withdrawn",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Withdrawn)
    }
}

impl std::fmt::Display for CaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the lifecycle needs to know of one message.
#[derive(Debug, Clone)]
pub struct CaseMessage {
    pub message_id: String,
    pub message_type: String,
    pub from: String,
    pub in_reply_to: Option<String>,
    /// Shared: a case's history is copied for every check, the payload need not be.
    pub payload: std::sync::Arc<Value>,
    /// Sent by the sender's consular mission (`sent_by: mission`).
    pub from_mission: bool,
}

impl From<&Envelope> for CaseMessage {
    fn from(envelope: &Envelope) -> Self {
        Self {
            message_id: envelope.message_id.to_string(),
            message_type: envelope.message_type.clone(),
            from: envelope.from.clone(),
            in_reply_to: envelope.in_reply_to.map(|u| u.to_string()),
            payload: envelope.payload.clone(),
            from_mission: envelope.sent_by.as_deref() == Some("mission"),
        }
    }
}

impl CaseMessage {
    /// From a stored envelope's text. Not through [`Envelope`]: a stored
    /// body may be a retention skeleton, which carries `purged_at` and no
    /// longer matches the schema, and its case state must still replay.
    pub fn from_stored(body: &str) -> Option<Self> {
        let mut v: Value = serde_json::from_str(body).ok()?;
        Some(Self {
            message_id: v["message_id"].as_str()?.to_string(),
            message_type: v["type"].as_str()?.to_string(),
            from: v["from"].as_str()?.to_string(),
            in_reply_to: v["in_reply_to"].as_str().map(String::from),
            from_mission: v["sent_by"] == "mission",
            payload: std::sync::Arc::new(v["payload"].take()),
        })
    }
}

/// Every type the lifecycle knows, in catalogue order.
pub const TYPES: &[&str] = &[
    "referral.notify",
    "referral.acknowledge",
    "referral.update",
    "referral.withdraw",
    "family-tracing.request",
    "family-tracing.result",
    "repatriation.request",
    "repatriation.confirm",
    "repatriation.handover",
    "reintegration.report",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("case {case_ref} {}: `{message_type}` is not allowed now; allowed next: {}", state_text(*.state), list(.allowed))]
    NotAllowed {
        case_ref: String,
        state: Option<CaseState>,
        message_type: String,
        allowed: Vec<&'static str>,
    },
    #[error("`{message_type}` must answer a `{expected}` of case {case_ref} (set in_reply_to)")]
    ReplyRequired {
        case_ref: String,
        message_type: String,
        expected: &'static str,
    },
    #[error("in_reply_to {in_reply_to} is not a message of case {case_ref}")]
    UnknownReplyTarget {
        case_ref: String,
        in_reply_to: String,
    },
    #[error(
        "in_reply_to {in_reply_to} is a `{actual}`, but `{message_type}` answers a `{expected}`"
    )]
    WrongReplyTarget {
        in_reply_to: String,
        actual: String,
        message_type: String,
        expected: &'static str,
    },
    #[error(
        "in case {case_ref}, `{message_type}` is sent by the {role} country ({expected}), not {from}"
    )]
    WrongSide {
        case_ref: String,
        message_type: String,
        role: &'static str,
        expected: String,
        from: String,
    },
    #[error("message {message_id} is already part of case {case_ref}")]
    Duplicate {
        case_ref: String,
        message_id: String,
    },
}

fn state_text(state: Option<CaseState>) -> String {
    match state {
        Some(s) => format!("is `{s}`"),
        None => "does not exist (a case starts with `referral.notify`)".into(),
    }
}

fn list(types: &[&str]) -> String {
    if types.is_empty() {
        "nothing (the case is over)".into()
    } else {
        types.join(", ")
    }
}

impl LifecycleError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed { .. } => "case_state_conflict",
            Self::ReplyRequired { .. }
            | Self::UnknownReplyTarget { .. }
            | Self::WrongReplyTarget { .. } => "bad_in_reply_to",
            Self::Duplicate { .. } => "duplicate_message_id",
            Self::WrongSide { .. } => "wrong_side",
        }
    }
}

/// The state a case is in after its `history` (oldest first).
pub fn state_of(
    case_ref: &str,
    history: &[CaseMessage],
) -> Result<Option<CaseState>, LifecycleError> {
    let mut state = None;
    for (i, m) in history.iter().enumerate() {
        state = Some(next_state(case_ref, state, m, &history[..i])?);
    }
    Ok(state)
}

/// The state after `history`, skipping any message that no longer fits (a
/// sent message the peer later refused can leave a later one stranded);
/// every message was checked when it was stored.
pub fn replay(case_ref: &str, history: &[CaseMessage]) -> Option<CaseState> {
    let mut state = None;
    for (i, m) in history.iter().enumerate() {
        if let Ok(s) = next_state(case_ref, state, m, &history[..i]) {
            state = Some(s);
        }
    }
    state
}

/// The types a case in `state` may receive next (ignoring reply targets).
pub fn allowed_next(state: Option<CaseState>) -> Vec<&'static str> {
    TYPES
        .iter()
        .copied()
        .filter(|t| transition(state, t, &Value::Null, &[]).is_some())
        .collect()
}

/// Checks `message` against the case and returns the state it leads to.
pub fn next_state(
    case_ref: &str,
    state: Option<CaseState>,
    message: &CaseMessage,
    history: &[CaseMessage],
) -> Result<CaseState, LifecycleError> {
    if history.iter().any(|h| h.message_id == message.message_id) {
        return Err(LifecycleError::Duplicate {
            case_ref: case_ref.to_string(),
            message_id: message.message_id.clone(),
        });
    }
    if let Some(role) = sender_role(&message.message_type) {
        let parties = super::ids::CaseRef::parse(case_ref);
        let (host, origin) = parties.map_or(("", ""), |c| (c.host(), c.origin()));
        let expected = if role == "host" { host } else { origin };
        if message.from != expected {
            return Err(LifecycleError::WrongSide {
                case_ref: case_ref.to_string(),
                message_type: message.message_type.clone(),
                role,
                expected: expected.to_string(),
                from: message.from.clone(),
            });
        }
    }
    let target = match &message.in_reply_to {
        Some(id) => Some(
            history
                .iter()
                .find(|h| &h.message_id == id)
                .ok_or_else(|| LifecycleError::UnknownReplyTarget {
                    case_ref: case_ref.to_string(),
                    in_reply_to: id.clone(),
                })?,
        ),
        None => None,
    };
    if let Some(expected) = answers(&message.message_type, &message.payload) {
        match target {
            None => {
                return Err(LifecycleError::ReplyRequired {
                    case_ref: case_ref.to_string(),
                    message_type: message.message_type.clone(),
                    expected,
                });
            }
            Some(t)
                if t.message_type != expected
                    || (expected == "repatriation.handover" && t.from == message.from) =>
            {
                return Err(LifecycleError::WrongReplyTarget {
                    in_reply_to: t.message_id.clone(),
                    actual: if t.message_type == expected {
                        format!("{} of the same side", t.message_type)
                    } else {
                        t.message_type.clone()
                    },
                    message_type: message.message_type.clone(),
                    expected,
                });
            }
            Some(_) => {}
        }
    }
    transition(state, &message.message_type, &message.payload, history).ok_or_else(|| {
        LifecycleError::NotAllowed {
            case_ref: case_ref.to_string(),
            state,
            message_type: message.message_type.clone(),
            allowed: allowed_next(state),
        }
    })
}

/// Which side of a case sends a type: the host country (where the person
/// was identified; first in the case reference) or the origin country
/// (second). Types either side may send return None.
fn sender_role(message_type: &str) -> Option<&'static str> {
    match message_type {
        "referral.notify" | "repatriation.request" => Some("host"),
        "referral.acknowledge"
        | "family-tracing.result"
        | "repatriation.confirm"
        | "reintegration.report" => Some("origin"),
        _ => None,
    }
}

/// The message type this one must answer, if any.
fn answers(message_type: &str, payload: &Value) -> Option<&'static str> {
    match message_type {
        "referral.acknowledge" => Some("referral.notify"),
        "family-tracing.result" => Some("family-tracing.request"),
        "repatriation.confirm" => Some("repatriation.request"),
        "repatriation.handover" if payload["record"] == "countersignature" => {
            Some("repatriation.handover")
        }
        _ => None,
    }
}

/// Where tracing stands, from the history: used when a repatriation
/// proposal is declined and the case falls back to its tracing stage.
fn tracing_stage(history: &[CaseMessage]) -> CaseState {
    let requested = history
        .iter()
        .any(|m| m.message_type == "family-tracing.request");
    let answered = history
        .iter()
        .any(|m| m.message_type == "family-tracing.result");
    match (requested, answered) {
        (_, true) => CaseState::Traced,
        (true, false) => CaseState::Tracing,
        _ => CaseState::Acknowledged,
    }
}

/// The transition table. `payload` is Null when only asking whether a type
/// is allowed at all.
fn transition(
    state: Option<CaseState>,
    message_type: &str,
    payload: &Value,
    history: &[CaseMessage],
) -> Option<CaseState> {
    use CaseState::*;
    let Some(state) = state else {
        return (message_type == "referral.notify").then_some(Referred);
    };
    if state.is_final() {
        return None;
    }
    match (message_type, state) {
        ("referral.acknowledge", Referred) => Some(if payload["accepted"] == false {
            Withdrawn
        } else {
            Acknowledged
        }),
        ("referral.update", _) => Some(state),
        ("referral.withdraw", _) => Some(Withdrawn),
        ("family-tracing.request", Acknowledged | Tracing | Traced) => Some(Tracing),
        ("family-tracing.request", RepatriationProposed | RepatriationAgreed) => Some(state),
        ("family-tracing.result", Tracing) => Some(Traced),
        (
            "family-tracing.result",
            Traced | RepatriationProposed | RepatriationAgreed | HandedOver | FollowingUp,
        ) => Some(state),
        ("repatriation.request", Acknowledged | Tracing | Traced | RepatriationProposed) => {
            Some(RepatriationProposed)
        }
        ("repatriation.confirm", RepatriationProposed) => {
            Some(match payload["decision"].as_str() {
                Some("accepted") | None => RepatriationAgreed,
                Some("counter_proposal") => RepatriationProposed,
                Some(_) => tracing_stage(history),
            })
        }
        ("repatriation.handover", RepatriationAgreed)
            if payload["record"] != "countersignature" =>
        {
            Some(HandedOver)
        }
        ("repatriation.handover", HandedOver) if payload["record"] != "handover" => {
            Some(HandedOver)
        }
        ("reintegration.report", HandedOver | FollowingUp) => {
            Some(if payload["case_status"] == "closed" {
                Closed
            } else {
                FollowingUp
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CASE: &str = "TH-KH-2026-000042";

    fn msg(id: &str, t: &str, from: &str, reply: Option<&str>, payload: Value) -> CaseMessage {
        CaseMessage {
            message_id: id.into(),
            message_type: t.into(),
            from: from.into(),
            in_reply_to: reply.map(String::from),
            payload: payload.into(),
            from_mission: false,
        }
    }

    fn run(history: &[CaseMessage]) -> Result<Option<CaseState>, LifecycleError> {
        state_of(CASE, history)
    }

    fn full_case() -> Vec<CaseMessage> {
        vec![
            msg("1", "referral.notify", "TH", None, json!({})),
            msg(
                "2",
                "referral.acknowledge",
                "KH",
                Some("1"),
                json!({"accepted": true}),
            ),
            msg("3", "family-tracing.request", "TH", None, json!({})),
            msg(
                "4",
                "family-tracing.result",
                "KH",
                Some("3"),
                json!({"family_found": true}),
            ),
            msg("5", "repatriation.request", "TH", None, json!({})),
            msg(
                "6",
                "repatriation.confirm",
                "KH",
                Some("5"),
                json!({"decision": "accepted"}),
            ),
            msg(
                "7",
                "repatriation.handover",
                "TH",
                None,
                json!({"record": "handover"}),
            ),
            msg(
                "8",
                "repatriation.handover",
                "KH",
                Some("7"),
                json!({"record": "countersignature"}),
            ),
            msg(
                "9",
                "reintegration.report",
                "KH",
                None,
                json!({"case_status": "open"}),
            ),
            msg(
                "10",
                "reintegration.report",
                "KH",
                None,
                json!({"case_status": "closed"}),
            ),
        ]
    }

    #[test]
    fn a_whole_case_walks_every_state() {
        let case = full_case();
        let expected = [
            "referred",
            "acknowledged",
            "tracing",
            "traced",
            "repatriation_proposed",
            "repatriation_agreed",
            "handed_over",
            "handed_over",
            "following_up",
            "closed",
        ];
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(
                run(&case[..=n]).unwrap().unwrap().as_str(),
                *want,
                "after message {}",
                n + 1
            );
        }
    }

    #[test]
    fn return_may_proceed_while_tracing_is_open() {
        let mut case = full_case()[..3].to_vec();
        case.push(msg("5", "repatriation.request", "TH", None, json!({})));
        case.push(msg(
            "6",
            "repatriation.confirm",
            "KH",
            Some("5"),
            json!({"decision": "accepted"}),
        ));
        case.push(msg(
            "4",
            "family-tracing.result",
            "KH",
            Some("3"),
            json!({}),
        ));
        assert_eq!(run(&case).unwrap(), Some(CaseState::RepatriationAgreed));
    }

    #[test]
    fn counter_proposal_and_decline() {
        let mut case = full_case()[..5].to_vec();
        case.push(msg(
            "6",
            "repatriation.confirm",
            "KH",
            Some("5"),
            json!({"decision": "counter_proposal"}),
        ));
        assert_eq!(run(&case).unwrap(), Some(CaseState::RepatriationProposed));
        case.push(msg("6b", "repatriation.request", "TH", None, json!({})));
        case.push(msg(
            "6c",
            "repatriation.confirm",
            "KH",
            Some("6b"),
            json!({"decision": "declined"}),
        ));
        assert_eq!(run(&case).unwrap(), Some(CaseState::Traced));
    }

    #[test]
    fn withdraw_from_any_open_state_and_nothing_after() {
        for n in 1..9 {
            let mut case = full_case()[..n].to_vec();
            case.push(msg("w", "referral.withdraw", "KH", None, json!({})));
            assert_eq!(run(&case).unwrap(), Some(CaseState::Withdrawn));
            case.push(msg("u", "referral.update", "TH", None, json!({})));
            let err = run(&case).unwrap_err();
            assert!(err.to_string().contains("`withdrawn`"), "{err}");
        }
    }

    #[test]
    fn refusals_name_the_state_and_what_is_allowed() {
        let case = &full_case()[..2];
        let confirm = msg(
            "x",
            "repatriation.confirm",
            "KH",
            Some("1"),
            json!({"decision": "accepted"}),
        );
        let err = next_state(CASE, run(case).unwrap(), &confirm, case).unwrap_err();
        assert!(
            matches!(err, LifecycleError::WrongReplyTarget { .. }),
            "{err}"
        );

        let handover = msg(
            "x",
            "repatriation.handover",
            "TH",
            None,
            json!({"record": "handover"}),
        );
        let err = next_state(CASE, run(case).unwrap(), &handover, case).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`acknowledged`") && text.contains("repatriation.request"),
            "{text}"
        );
        assert_eq!(err.code(), "case_state_conflict");

        let err = next_state(CASE, None, &handover, &[]).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");

        let again = msg("y", "referral.notify", "TH", None, json!({}));
        assert!(next_state(CASE, run(case).unwrap(), &again, case).is_err());
    }

    #[test]
    fn replies_must_point_into_the_case() {
        let case = &full_case()[..1];
        let ack = msg("2", "referral.acknowledge", "KH", None, json!({}));
        assert!(matches!(
            next_state(CASE, run(case).unwrap(), &ack, case),
            Err(LifecycleError::ReplyRequired { .. })
        ));
        let ack = msg("2", "referral.acknowledge", "KH", Some("nope"), json!({}));
        assert!(matches!(
            next_state(CASE, run(case).unwrap(), &ack, case),
            Err(LifecycleError::UnknownReplyTarget { .. })
        ));
        let update = msg("u", "referral.update", "KH", Some("nope"), json!({}));
        assert!(next_state(CASE, run(case).unwrap(), &update, case).is_err());
    }

    #[test]
    fn countersignature_must_come_from_the_other_side() {
        let case = &full_case()[..7];
        let own = msg(
            "8",
            "repatriation.handover",
            "TH",
            Some("7"),
            json!({"record": "countersignature"}),
        );
        assert!(next_state(CASE, run(case).unwrap(), &own, case).is_err());
    }

    #[test]
    fn each_side_sends_only_its_own_types() {
        let case = &full_case()[..2];
        let wrong = msg("x", "repatriation.request", "KH", None, json!({}));
        let err = next_state(CASE, run(case).unwrap(), &wrong, case).unwrap_err();
        assert_eq!(err.code(), "wrong_side");
        assert!(err.to_string().contains("host country (TH)"), "{err}");
        let notify = msg("y", "referral.notify", "KH", None, json!({}));
        assert!(next_state(CASE, None, &notify, &[]).is_err());
    }

    #[test]
    fn declined_referral_ends_the_case() {
        let case = vec![
            msg("1", "referral.notify", "TH", None, json!({})),
            msg(
                "2",
                "referral.acknowledge",
                "KH",
                Some("1"),
                json!({"accepted": false}),
            ),
        ];
        assert_eq!(run(&case).unwrap(), Some(CaseState::Withdrawn));
    }
}
