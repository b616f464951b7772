//! The handover record as the two countries' officers sign it on paper,
//! built from a case's messages: the case's last `repatriation.handover`
//! with `record = "handover"`, the countersignature that answers it, and
//! each person it names, described from the case's `repatriation.request`
//! (matched by `person_ref`), else from the `referral.notify` person, with
//! every correction applied. Pure: the HTTP layer prints it.

use std::collections::HashMap;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::admission::corrected_payload;
use super::ids::CaseRef;
use super::lifecycle::CaseMessage;

const HANDOVER: &str = "repatriation.handover";

/// Why a case has no printable handover record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    #[error("case {case_ref} has no repatriation.handover record")]
    NoHandover { case_ref: String },
    /// The record's payload is gone (retention) or does not read as a
    /// handover (it passed the schema once, so only a purge does this).
    #[error(
        "the handover record {message_id} of case {case_ref} no longer holds its details (purged)"
    )]
    Purged {
        case_ref: String,
        message_id: String,
    },
}

/// An officer as the record names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Officer {
    pub name: Option<String>,
    pub organisation: Option<String>,
    pub position: Option<String>,
}

impl Officer {
    fn of(v: &Value) -> Self {
        Self {
            name: text(&v["name"]),
            organisation: text(&v["organisation"]),
            position: text(&v["position"]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

impl Sex {
    fn of(v: &Value) -> Self {
        match v.as_str() {
            Some("female") => Sex::Female,
            Some("male") => Sex::Male,
            Some("other") => Sex::Other,
            _ => Sex::Unknown,
        }
    }

    /// The translation key of its label.
    pub fn key(self) -> &'static str {
        match self {
            Sex::Female => "sex_female",
            Sex::Male => "sex_male",
            Sex::Other => "sex_other",
            Sex::Unknown => "sex_unknown",
        }
    }
}

/// The age bands of the annual statistics, plus the two unknowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeBand {
    Under15,
    From15To17,
    Adult,
    /// No age, but treated as a child (COMMIT: a person who may be a child
    /// is treated as one).
    MinorAgeUnknown,
    Unknown,
}

impl AgeBand {
    fn of_years(years: i64) -> Self {
        match years {
            ..15 => AgeBand::Under15,
            15..18 => AgeBand::From15To17,
            _ => AgeBand::Adult,
        }
    }

    /// From a person's `date_of_birth` (age on `on`), else
    /// `estimated_age`, else `presumed_minor`.
    pub fn of_person(person: &Value, on: Option<Date>) -> Self {
        let born = person["date_of_birth"]
            .as_str()
            .and_then(|d| Date::parse(d, DATE).ok());
        if let (Some(born), Some(on)) = (born, on) {
            return Self::of_years(years_between(born, on));
        }
        if let Some(age) = person["estimated_age"].as_i64() {
            return Self::of_years(age);
        }
        if person["presumed_minor"] == true {
            AgeBand::MinorAgeUnknown
        } else {
            AgeBand::Unknown
        }
    }

    /// The translation key of its label.
    pub fn key(self) -> &'static str {
        match self {
            AgeBand::Under15 => "age_under_15",
            AgeBand::From15To17 => "age_15_17",
            AgeBand::Adult => "age_18_over",
            AgeBand::MinorAgeUnknown => "age_minor_unknown",
            AgeBand::Unknown => "age_unknown",
        }
    }
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Whole years from `born` to `on`.
fn years_between(born: Date, on: Date) -> i64 {
    let mut years = i64::from(on.year() - born.year());
    if (on.month() as u8, on.day()) < (born.month() as u8, born.day()) {
        years -= 1;
    }
    years
}

/// One person handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOverPerson {
    pub person_ref: String,
    pub name_native: Option<String>,
    pub name_latin: Option<String>,
    pub sex: Sex,
    pub age: AgeBand,
}

/// The other side's confirmation of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Countersignature {
    pub message_id: String,
    /// The countersigning country.
    pub from: String,
    /// When it was made (the envelope's `created_at`, as both sides hold it).
    pub created_at: Option<String>,
    pub remarks: Option<String>,
}

/// Everything the paper record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverRecord {
    pub case_ref: String,
    pub message_id: String,
    /// The country that recorded the handover (either side may).
    pub from: String,
    /// Where the person was identified: its officer hands over.
    pub host: String,
    /// The person's country: its officer receives.
    pub origin: String,
    /// RFC 3339, with the offset of the place.
    pub handed_over_at: String,
    pub place: String,
    /// The border gate's code (v2), as the corridor's agreement lists it.
    pub gate: Option<String>,
    pub handed_over_by: Officer,
    pub received_by: Officer,
    pub persons: Vec<HandedOverPerson>,
    pub documents: Vec<String>,
    pub belongings: Vec<String>,
    pub remarks: Option<String>,
    pub countersignature: Option<Countersignature>,
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn texts(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(text)
        .collect()
}

/// A message's payload with every correction of it applied.
fn current(m: &CaseMessage, history: &[CaseMessage]) -> Value {
    corrected_payload(m, history).unwrap_or_else(|| (*m.payload).clone())
}

impl HandoverRecord {
    /// The case's last handover record. `history` is the case's messages
    /// in the order the case saw them (both directions); `created_at` maps
    /// a message id to its envelope's `created_at`.
    pub fn of_case(
        case_ref: &str,
        history: &[CaseMessage],
        created_at: &HashMap<String, String>,
    ) -> Result<Self, HandoverError> {
        let record = history
            .iter()
            .rev()
            .find(|m| m.message_type == HANDOVER && m.payload["record"] == "handover")
            .ok_or_else(|| HandoverError::NoHandover {
                case_ref: case_ref.to_string(),
            })?;
        let parties = CaseRef::parse(case_ref);
        let p = current(record, history);
        let (Some(handed_over_at), Some(place)) = (text(&p["handed_over_at"]), text(&p["place"]))
        else {
            return Err(HandoverError::Purged {
                case_ref: case_ref.to_string(),
                message_id: record.message_id.clone(),
            });
        };
        let on = OffsetDateTime::parse(&handed_over_at, &Rfc3339)
            .ok()
            .map(|t| t.date());
        let persons = texts(&p["persons"])
            .into_iter()
            .map(|person_ref| person(history, person_ref, on))
            .collect();
        let countersignature = history
            .iter()
            .rev()
            .find(|m| {
                m.message_type == HANDOVER
                    && m.payload["record"] == "countersignature"
                    && m.in_reply_to.as_deref() == Some(record.message_id.as_str())
            })
            .map(|c| Countersignature {
                message_id: c.message_id.clone(),
                from: c.from.clone(),
                created_at: created_at.get(&c.message_id).cloned(),
                remarks: text(&current(c, history)["remarks"]),
            });
        Ok(Self {
            case_ref: case_ref.to_string(),
            message_id: record.message_id.clone(),
            host: parties.map(|p| p.host().to_string()).unwrap_or_default(),
            origin: parties.map(|p| p.origin().to_string()).unwrap_or_default(),
            from: record.from.clone(),
            handed_over_at,
            place,
            gate: text(&p["gate"]),
            handed_over_by: Officer::of(&p["handed_over_by"]),
            received_by: Officer::of(&p["received_by"]),
            persons,
            documents: texts(&p["documents"]),
            belongings: texts(&p["belongings"]),
            remarks: text(&p["remarks"]),
            countersignature,
        })
    }
}

/// `person_ref` as the latest request naming it describes them, else the
/// referred person, else by reference only.
fn person(history: &[CaseMessage], person_ref: String, on: Option<Date>) -> HandedOverPerson {
    let from_request = history
        .iter()
        .rev()
        .filter(|m| m.message_type == "repatriation.request")
        .find_map(|m| {
            current(m, history)["persons"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["person_ref"] == person_ref.as_str())
                .cloned()
        });
    let described = from_request.or_else(|| {
        history
            .iter()
            .rev()
            .find(|m| m.message_type == "referral.notify")
            .map(|m| current(m, history)["person"].clone())
    });
    let p = described.unwrap_or(Value::Null);
    HandedOverPerson {
        name_native: text(&p["name_native"]),
        name_latin: text(&p["name_latin"]),
        sex: Sex::of(&p["sex"]),
        age: AgeBand::of_person(&p, on),
        person_ref,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn msg(id: &str, t: &str, from: &str, reply: Option<&str>, payload: Value) -> CaseMessage {
        CaseMessage {
            message_id: id.into(),
            message_type: t.into(),
            from: from.into(),
            in_reply_to: reply.map(String::from),
            payload: Arc::new(payload),
            from_mission: false,
        }
    }

    fn handover(record: &str, persons: &[&str]) -> Value {
        json!({
            "record": record,
            "handed_over_at": "2027-01-12T10:30:00+07:00",
            "place": "Poipet–Aranyaprathet",
            "handed_over_by": {"name": "Officer A", "organisation": "Agency A"},
            "received_by": {"name": "Officer B", "organisation": "Agency B", "position": "Reception"},
            "persons": persons,
            "documents": ["certificate of identity"],
        })
    }

    #[test]
    fn the_last_record_with_its_countersignature_and_persons_from_the_request() {
        let history = vec![
            msg(
                "n",
                "referral.notify",
                "TH",
                None,
                json!({"person": {"name_latin": "Referred Person", "sex": "male", "presumed_minor": true}}),
            ),
            msg(
                "r",
                "repatriation.request",
                "TH",
                None,
                json!({"persons": [
                    {"person_ref": "P1", "name_native": "ក <b>", "name_latin": "Sample One", "sex": "female", "date_of_birth": "2012-01-13", "presumed_minor": true},
                    {"person_ref": "P2", "name_latin": "Sample Two", "sex": "male", "estimated_age": 16, "presumed_minor": true},
                    {"person_ref": "P3", "name_latin": "Sample Three", "sex": "other", "presumed_minor": true},
                    {"person_ref": "P4", "name_latin": "Sample Four", "sex": "unknown", "estimated_age": 30, "presumed_minor": false},
                ]}),
            ),
            msg("h1", HANDOVER, "TH", None, handover("handover", &["P1"])),
            msg(
                "h2",
                HANDOVER,
                "TH",
                None,
                handover("handover", &["P1", "P2", "P3", "P4", "P9"]),
            ),
            msg(
                "c1",
                HANDOVER,
                "KH",
                Some("h1"),
                handover("countersignature", &["P1"]),
            ),
            msg("c2", HANDOVER, "KH", Some("h2"), {
                let mut p = handover("countersignature", &["P1"]);
                p["remarks"] = json!("all well");
                p
            }),
        ];
        let created = HashMap::from([("c2".to_string(), "2027-01-12T05:00:00Z".to_string())]);
        let r = HandoverRecord::of_case("TH-KH-2026-000001", &history, &created).unwrap();
        assert_eq!(r.message_id, "h2");
        assert_eq!(
            (r.from.as_str(), r.host.as_str(), r.origin.as_str()),
            ("TH", "TH", "KH")
        );
        let c = r.countersignature.unwrap();
        assert_eq!(c.message_id, "c2");
        assert_eq!(c.created_at.as_deref(), Some("2027-01-12T05:00:00Z"));
        assert_eq!(c.remarks.as_deref(), Some("all well"));
        let bands: Vec<AgeBand> = r.persons.iter().map(|p| p.age).collect();
        // Born 2012-01-13: 14 on 2027-01-12, the day before the birthday.
        assert_eq!(
            bands,
            [
                AgeBand::Under15,
                AgeBand::From15To17,
                AgeBand::MinorAgeUnknown,
                AgeBand::Adult,
                AgeBand::MinorAgeUnknown
            ]
        );
        assert_eq!(r.persons[0].name_native.as_deref(), Some("ក <b>"));
        assert_eq!(r.persons[0].sex, Sex::Female);
        // P9 is in no request: the referred person stands for it.
        assert_eq!(r.persons[4].name_latin.as_deref(), Some("Referred Person"));
        assert_eq!(r.received_by.position.as_deref(), Some("Reception"));
        assert_eq!(r.documents, ["certificate of identity"]);
        assert_eq!(r.gate, None, "a v1 record names no gate");
    }

    #[test]
    fn no_record_and_a_purged_record_are_told_apart() {
        let only_counter = vec![msg(
            "c",
            HANDOVER,
            "KH",
            Some("x"),
            handover("countersignature", &["P1"]),
        )];
        assert_eq!(
            HandoverRecord::of_case("C", &only_counter, &HashMap::new()),
            Err(HandoverError::NoHandover {
                case_ref: "C".into()
            })
        );
        let purged = vec![msg(
            "h",
            HANDOVER,
            "TH",
            None,
            json!({"record": "handover"}),
        )];
        assert!(matches!(
            HandoverRecord::of_case("C", &purged, &HashMap::new()),
            Err(HandoverError::Purged { .. })
        ));
    }

    #[test]
    fn the_sides_follow_the_case_not_who_recorded_it() {
        // The origin may record the handover: its officer still receives.
        let by_origin = vec![msg(
            "h",
            HANDOVER,
            "KH",
            None,
            handover("handover", &["P1"]),
        )];
        let r = HandoverRecord::of_case("TH-KH-2026-000001", &by_origin, &HashMap::new()).unwrap();
        assert_eq!(
            (r.from.as_str(), r.host.as_str(), r.origin.as_str()),
            ("KH", "TH", "KH")
        );
        assert_eq!(r.received_by.name.as_deref(), Some("Officer B"));
        assert_eq!(r.persons[0].age, AgeBand::Unknown, "described nowhere");
        assert!(r.countersignature.is_none());
    }

    #[test]
    fn ages_from_a_birth_date_count_whole_years_at_the_handover() {
        let on = Date::parse("2027-01-12", DATE).ok();
        let born = |d: &str| json!({"date_of_birth": d, "presumed_minor": false});
        assert_eq!(
            AgeBand::of_person(&born("2012-01-12"), on),
            AgeBand::From15To17
        );
        assert_eq!(
            AgeBand::of_person(&born("2009-01-13"), on),
            AgeBand::From15To17
        );
        assert_eq!(AgeBand::of_person(&born("2009-01-12"), on), AgeBand::Adult);
        assert_eq!(
            AgeBand::of_person(&json!({"presumed_minor": false}), on),
            AgeBand::Unknown
        );
    }
}
