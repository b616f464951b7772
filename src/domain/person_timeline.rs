//! The person's own timeline (COMMIT guideline 31: a clear timeline of the
//! support a victim may receive and of their return): what has happened in
//! their case, what comes next from its state, and the due dates of the
//! answers still awaited, with the dates both gateways hold (the envelopes'
//! `created_at`, the payloads' own dates, the timers' due times). Only the
//! referred person's own name; never another person of a group request.
//! Pure: the HTTP layer prints it in the person's language.

use std::collections::HashMap;

use serde_json::Value;

use super::admission::corrected_payload;
use super::ids::CaseRef;
use super::lifecycle::{CaseMessage, CaseState};

/// A step of the case, as the person is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Referred,
    ReflectionStarted,
    Acknowledged,
    TracingRequested,
    TracingResult,
    ReturnProposed,
    ReturnAgreed,
    ReturnCounterProposed,
    ReturnDeclined,
    HandedOver,
    Countersigned,
    Withdrawn,
    FollowUp,
}

impl Step {
    /// The translation key of its sentence.
    pub fn key(self) -> &'static str {
        match self {
            Step::Referred => "event_referred",
            Step::ReflectionStarted => "event_reflection",
            Step::Acknowledged => "event_acknowledged",
            Step::TracingRequested => "event_tracing_requested",
            Step::TracingResult => "event_tracing_result",
            Step::ReturnProposed => "event_return_proposed",
            Step::ReturnAgreed => "event_return_agreed",
            Step::ReturnCounterProposed => "event_return_counter",
            Step::ReturnDeclined => "event_return_declined",
            Step::HandedOver => "event_handed_over",
            Step::Countersigned => "event_countersigned",
            Step::Withdrawn => "event_withdrawn",
            Step::FollowUp => "event_follow_up",
        }
    }
}

/// One thing that has happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happened {
    pub step: Step,
    /// `YYYY-MM-DD`: when it was recorded, or the date it names.
    pub date: Option<String>,
    /// The date a sentence names (`{date}`: the agreed return date).
    pub named_date: Option<String>,
    /// The place a sentence names (`{place}`: the handover point).
    pub place: Option<String>,
}

/// An answer still awaited, and by when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited {
    /// The message type awaited, e.g. `repatriation.confirm`.
    pub expected_type: String,
    /// `YYYY-MM-DD`.
    pub due: String,
}

impl Awaited {
    /// The translation key of what is awaited.
    pub fn key(&self) -> &'static str {
        match self.expected_type.as_str() {
            "referral.acknowledge" => "due_referral_acknowledge",
            "family-tracing.result" => "due_family_tracing_result",
            "repatriation.confirm" => "due_repatriation_confirm",
            "repatriation.handover" => "due_repatriation_handover",
            _ => "due_other",
        }
    }
}

/// The sheet's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonTimeline {
    pub case_ref: String,
    pub host: String,
    pub origin: String,
    pub name_native: Option<String>,
    pub name_latin: Option<String>,
    pub happened: Vec<Happened>,
    pub state: Option<CaseState>,
    pub awaited: Vec<Awaited>,
}

/// The translation key of what comes next in `state`.
pub fn next_key(state: Option<CaseState>) -> &'static str {
    match state {
        None => "next_none",
        Some(CaseState::Referred) => "next_referred",
        Some(CaseState::Acknowledged) => "next_acknowledged",
        Some(CaseState::Tracing) => "next_tracing",
        Some(CaseState::Traced) => "next_traced",
        Some(CaseState::RepatriationProposed) => "next_repatriation_proposed",
        Some(CaseState::RepatriationAgreed) => "next_repatriation_agreed",
        Some(CaseState::HandedOver) => "next_handed_over",
        Some(CaseState::FollowingUp) => "next_following_up",
        Some(CaseState::Closed) => "next_closed",
        Some(CaseState::Withdrawn) => "next_withdrawn",
    }
}

/// The date part of an RFC 3339 time or a date.
fn day(v: Option<&str>) -> Option<String> {
    v.filter(|s| s.len() >= 10 && s.is_char_boundary(10))
        .map(|s| s[..10].to_string())
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

impl PersonTimeline {
    /// From the case's messages in the case's order (both directions),
    /// each envelope's `created_at` by message id, the state they lead to,
    /// and the answers still awaited (`(expected type, due time)`, open
    /// timers only).
    pub fn of_case(
        case_ref: &str,
        history: &[CaseMessage],
        created_at: &HashMap<String, String>,
        state: Option<CaseState>,
        awaited: &[(String, String)],
    ) -> Self {
        let parties = CaseRef::parse(case_ref);
        let person = history
            .iter()
            .find(|m| m.message_type == "referral.notify")
            .map(|m| corrected_payload(m, history).unwrap_or_else(|| (*m.payload).clone()));
        let name = |field: &str| person.as_ref().and_then(|p| text(&p["person"][field]));
        let mut happened = Vec::new();
        for m in history {
            let at = day(created_at.get(&m.message_id).map(String::as_str));
            let mut push = |step, date: Option<String>, named: Option<String>, place| {
                happened.push(Happened {
                    step,
                    date: date.or_else(|| at.clone()),
                    named_date: named,
                    place,
                });
            };
            let p = &m.payload;
            match m.message_type.as_str() {
                "referral.notify" => {
                    push(Step::Referred, None, None, None);
                    if let Some(start) =
                        day(p["identification"]["reflection_period_start"].as_str())
                    {
                        push(Step::ReflectionStarted, Some(start), None, None);
                    }
                }
                "referral.acknowledge" if p["accepted"] != false => {
                    push(Step::Acknowledged, None, None, None)
                }
                "referral.withdraw" => push(Step::Withdrawn, None, None, None),
                "family-tracing.request" => push(Step::TracingRequested, None, None, None),
                "family-tracing.result" => push(Step::TracingResult, None, None, None),
                "repatriation.request" => push(Step::ReturnProposed, None, None, None),
                "repatriation.confirm" => match p["decision"].as_str() {
                    Some("accepted") => {
                        let date = day(p["confirmed_date"].as_str());
                        push(Step::ReturnAgreed, None, date, None)
                    }
                    Some("counter_proposal") => push(Step::ReturnCounterProposed, None, None, None),
                    _ => push(Step::ReturnDeclined, None, None, None),
                },
                "repatriation.handover" if p["record"] == "countersignature" => {
                    push(Step::Countersigned, None, None, None)
                }
                "repatriation.handover" => {
                    let date = day(p["handed_over_at"].as_str());
                    push(Step::HandedOver, date, None, text(&p["place"]))
                }
                "reintegration.report" => push(Step::FollowUp, None, None, None),
                _ => {}
            }
        }
        // In the order of their dates (a reflection period may have begun
        // before the referral was sent); the case's order among equals.
        // Undated ones (a message without created_at) last.
        happened.sort_by(|a, b| (a.date.is_none(), &a.date).cmp(&(b.date.is_none(), &b.date)));
        let mut awaited: Vec<Awaited> = awaited
            .iter()
            .filter_map(|(expected_type, due)| {
                Some(Awaited {
                    expected_type: expected_type.clone(),
                    due: day(Some(due))?,
                })
            })
            .collect();
        awaited.sort_by(|a, b| a.due.cmp(&b.due));
        Self {
            case_ref: case_ref.to_string(),
            host: parties.map(|p| p.host().to_string()).unwrap_or_default(),
            origin: parties.map(|p| p.origin().to_string()).unwrap_or_default(),
            name_native: name("name_native"),
            name_latin: name("name_latin"),
            happened,
            state,
            awaited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn msg(id: &str, t: &str, payload: Value) -> CaseMessage {
        CaseMessage {
            message_id: id.into(),
            message_type: t.into(),
            from: "TH".into(),
            in_reply_to: None,
            payload: Arc::new(payload),
            from_mission: false,
        }
    }

    #[test]
    fn steps_with_their_dates_and_only_the_referred_persons_name() {
        let history = vec![
            msg(
                "n",
                "referral.notify",
                json!({"person": {"name_native": "សុខា", "name_latin": "Sokha Sample"},
                       "identification": {"reflection_period_start": "2026-11-01"}}),
            ),
            msg("a", "referral.acknowledge", json!({"accepted": true})),
            msg(
                "r",
                "repatriation.request",
                json!({"persons": [{"person_ref": "P1", "name_latin": "Sokha Sample"},
                                   {"person_ref": "P2", "name_latin": "Other Groupmember"}]}),
            ),
            msg(
                "c",
                "repatriation.confirm",
                json!({"decision": "accepted", "confirmed_date": "2027-01-12"}),
            ),
            msg(
                "h",
                "repatriation.handover",
                json!({"record": "handover", "handed_over_at": "2027-01-12T10:30:00+07:00", "place": "Poipet"}),
            ),
        ];
        let created: HashMap<String, String> = [
            ("n", "2026-11-22T09:30:00Z"),
            ("a", "2026-11-23T09:30:00Z"),
            ("r", "2026-12-15T08:00:00Z"),
            ("c", "2026-12-22T04:00:00Z"),
            ("h", "2027-01-12T04:10:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = PersonTimeline::of_case(
            "TH-KH-2026-000001",
            &history,
            &created,
            Some(CaseState::HandedOver),
            &[
                (
                    "repatriation.handover".into(),
                    "2027-01-13T04:10:00.000Z".into(),
                ),
                (
                    "referral.acknowledge".into(),
                    "2026-11-25T00:00:00.000Z".into(),
                ),
            ],
        );
        assert_eq!((t.host.as_str(), t.origin.as_str()), ("TH", "KH"));
        assert_eq!(t.name_latin.as_deref(), Some("Sokha Sample"));
        let steps: Vec<Step> = t.happened.iter().map(|h| h.step).collect();
        assert_eq!(
            steps,
            [
                Step::ReflectionStarted,
                Step::Referred,
                Step::Acknowledged,
                Step::ReturnProposed,
                Step::ReturnAgreed,
                Step::HandedOver
            ]
        );
        assert_eq!(t.happened[0].date.as_deref(), Some("2026-11-01"));
        assert_eq!(t.happened[1].date.as_deref(), Some("2026-11-22"));
        assert_eq!(t.happened[4].named_date.as_deref(), Some("2027-01-12"));
        assert_eq!(t.happened[5].place.as_deref(), Some("Poipet"));
        assert_eq!(t.happened[5].date.as_deref(), Some("2027-01-12"));
        assert_eq!(t.awaited[0].due, "2026-11-25", "soonest first");
        assert_eq!(t.awaited[1].key(), "due_repatriation_handover");
        assert_eq!(next_key(t.state), "next_handed_over");
        assert!(!format!("{t:?}").contains("Groupmember"));
    }
}
