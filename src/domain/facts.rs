//! De-identified facts: what the annual statistics count, taken from each
//! message when it is admitted (sent or received), because bodies are sealed
//! at rest and a report must not need the keys. A fact names a corridor, a
//! type, a date and categories (sex, age band, sector, channels, gate,
//! outcome); never a name, a date of birth, a document number or free text.
//!
//! One message yields one fact for itself (`person` empty) and, when it
//! lists persons (a repatriation request, a handover), one per person, under
//! the sender's `person_ref`. What a fact leaves out (a handover names no
//! sex) is resolved when the statistics are counted, from the case's other
//! facts ([`super::statistics`]).

use serde::Serialize;
use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::message::Envelope;

/// Value of a category a message does not state (a v1 message for a field
/// only v2 has, an age nobody knows).
pub const UNKNOWN: &str = "unknown";

/// One de-identified fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    pub message_id: String,
    /// The sender's person reference inside the message; empty for the
    /// message's own fact.
    pub person: String,
    pub case_ref: String,
    /// The two countries of the exchange, in alphabetical order (`KH-TH`),
    /// so both gateways name it alike.
    pub corridor: String,
    pub message_type: String,
    pub schema_version: u32,
    /// When the event happened (ms since the epoch): the handover time for
    /// a handover, the message's creation otherwise.
    pub at: i64,
    pub sex: Option<String>,
    pub age_band: Option<String>,
    /// `yes` for a child or a person presumed one, `no` for an adult.
    pub minor: Option<String>,
    pub sector: Option<String>,
    pub recruitment_channel: Option<String>,
    pub return_channel: Option<String>,
    pub gate: Option<String>,
    /// Where the person lives after return (reintegration reports).
    pub outcome: Option<String>,
    /// Reintegration status, the handover record kind, a confirmation's
    /// decision or an acknowledgement's answer.
    pub status: Option<String>,
}

/// The corridor two countries form, as both gateways write it.
pub fn corridor(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}-{b}")
    } else {
        format!("{b}-{a}")
    }
}

/// Age bands of the annual reports, at identification (or at the request
/// for a person first named there).
pub const AGE_BANDS: &[&str] = &["under_15", "15_to_17", "18_and_over", UNKNOWN];

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn date(v: &Value, pointer: &str) -> Option<Date> {
    let s = v.pointer(pointer)?.as_str()?;
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn years_between(born: Date, on: Date) -> i64 {
    let mut years = i64::from(on.year() - born.year());
    if (on.month() as u8, on.day()) < (born.month() as u8, born.day()) {
        years -= 1;
    }
    years
}

/// A person's sex, age band and minor flag, from the person object of a
/// referral or a request, at `on`.
fn person_categories(person: &Value, on: Date) -> (Option<String>, String, String) {
    let sex = text(person, "/sex");
    let age = date(person, "/date_of_birth")
        .map(|born| years_between(born, on))
        .or_else(|| person.get("estimated_age").and_then(Value::as_i64));
    let presumed = person
        .get("presumed_minor")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let band = match age {
        Some(a) if a < 15 => "under_15",
        Some(a) if a < 18 => "15_to_17",
        Some(_) => "18_and_over",
        None => UNKNOWN,
    };
    // A person who may be a child is counted as one (COMMIT guidelines).
    let minor = presumed || age.is_some_and(|a| a < 18);
    (
        sex,
        band.to_string(),
        if minor { "yes" } else { "no" }.to_string(),
    )
}

fn at_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The facts a message yields.
pub fn extract(envelope: &Envelope) -> Vec<Fact> {
    let p = envelope.payload.as_ref();
    let created = envelope.created_at;
    let mut at = at_ms(created);
    let mut base = Fact {
        message_id: envelope.message_id.to_string(),
        person: String::new(),
        case_ref: envelope.case_ref.clone(),
        corridor: corridor(&envelope.from, &envelope.to),
        message_type: envelope.message_type.clone(),
        schema_version: envelope.schema_version,
        at,
        sex: None,
        age_band: None,
        minor: None,
        sector: None,
        recruitment_channel: None,
        return_channel: None,
        gate: None,
        outcome: None,
        status: None,
    };
    let mut persons = Vec::new();
    match envelope.message_type.as_str() {
        "referral.notify" => {
            let on = date(p, "/identification/date").unwrap_or(created.date());
            if let Some(person) = p.get("person") {
                let (sex, band, minor) = person_categories(person, on);
                base.sex = sex;
                base.age_band = Some(band);
                base.minor = Some(minor);
            }
            base.sector = text(p, "/exploitation_type");
            base.recruitment_channel =
                Some(text(p, "/recruitment_channel").unwrap_or_else(|| UNKNOWN.into()));
        }
        "referral.acknowledge" => {
            base.status = p
                .get("accepted")
                .and_then(Value::as_bool)
                .map(|a| if a { "accepted" } else { "declined" }.to_string());
        }
        "repatriation.request" => {
            base.return_channel =
                Some(text(p, "/return_channel").unwrap_or_else(|| UNKNOWN.into()));
            base.gate = Some(text(p, "/gate").unwrap_or_else(|| UNKNOWN.into()));
            for person in p
                .get("persons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (sex, band, minor) = person_categories(person, created.date());
                persons.push(Fact {
                    person: text(person, "/person_ref").unwrap_or_default(),
                    sex,
                    age_band: Some(band),
                    minor: Some(minor),
                    ..base.clone()
                });
            }
        }
        "repatriation.confirm" => base.status = text(p, "/decision"),
        "repatriation.handover" => {
            if let Some(t) = text(p, "/handed_over_at").and_then(|s| {
                OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok()
            }) {
                at = at_ms(t);
                base.at = at;
            }
            base.status = text(p, "/record");
            base.gate = text(p, "/gate");
            for r in p
                .get("persons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = r.as_str() {
                    persons.push(Fact {
                        person: r.to_string(),
                        ..base.clone()
                    });
                }
            }
        }
        "reintegration.report" => {
            base.outcome = text(p, "/placement");
            base.status = text(p, "/status");
        }
        _ => {}
    }
    let mut facts = vec![base];
    // A person named twice in one message is one person.
    persons.sort_by(|a, b| a.person.cmp(&b.person));
    persons.dedup_by(|a, b| a.person == b.person);
    facts.extend(persons.into_iter().filter(|f| !f.person.is_empty()));
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(message_type: &str, version: u32, payload: Value) -> Envelope {
        serde_json::from_value(json!({
            "message_id": "01936f3e-5b7a-7c2d-9a61-3f0e8d2b4c11",
            "case_ref": "TH-KH-2026-000042",
            "type": message_type,
            "schema_version": version,
            "from": "TH",
            "to": "KH",
            "in_reply_to": null,
            "created_at": "2026-03-02T09:30:00Z",
            "payload": payload,
        }))
        .unwrap()
    }

    #[test]
    fn a_referral_yields_sex_age_band_sector_and_no_personal_value() {
        let e = envelope(
            "referral.notify",
            1,
            json!({
                "person": {"name_latin": "Synthetic Person", "sex": "female",
                           "date_of_birth": "2011-03-03", "presumed_minor": true},
                "identification": {"date": "2026-03-01"},
                "exploitation_type": "fishing",
            }),
        );
        let facts = extract(&e);
        assert_eq!(facts.len(), 1);
        let f = &facts[0];
        assert_eq!(f.corridor, "KH-TH");
        assert_eq!(f.sex.as_deref(), Some("female"));
        // 14 on the day of identification, one day before turning 15.
        assert_eq!(f.age_band.as_deref(), Some("under_15"));
        assert_eq!(f.minor.as_deref(), Some("yes"));
        assert_eq!(f.sector.as_deref(), Some("fishing"));
        // v1 has no recruitment channel.
        assert_eq!(f.recruitment_channel.as_deref(), Some(UNKNOWN));
        let text = serde_json::to_string(&facts).unwrap();
        assert!(
            !text.contains("Synthetic") && !text.contains("2011"),
            "{text}"
        );
    }

    #[test]
    fn age_unknown_is_a_presumed_minor_and_an_adult_is_not() {
        let on = Date::from_calendar_date(2026, time::Month::March, 1).unwrap();
        let (_, band, minor) = person_categories(&json!({"presumed_minor": true}), on);
        assert_eq!((band.as_str(), minor.as_str()), (UNKNOWN, "yes"));
        let (_, band, minor) =
            person_categories(&json!({"estimated_age": 30, "presumed_minor": false}), on);
        assert_eq!((band.as_str(), minor.as_str()), ("18_and_over", "no"));
        let (_, band, _) = person_categories(
            &json!({"date_of_birth": "2009-03-01", "presumed_minor": false}),
            on,
        );
        assert_eq!(band, "15_to_17");
    }

    #[test]
    fn a_request_and_a_handover_yield_one_fact_per_person() {
        let r = envelope(
            "repatriation.request",
            2,
            json!({"persons": [
                {"person_ref": "P1", "name_latin": "A", "sex": "male", "estimated_age": 40, "presumed_minor": false},
                {"person_ref": "P2", "name_latin": "B", "sex": "female", "presumed_minor": true},
            ], "return_channel": "deportation", "gate": "POIPET"}),
        );
        let facts = extract(&r);
        assert_eq!(facts.len(), 3);
        assert_eq!(facts[1].person, "P1");
        assert_eq!(facts[1].gate.as_deref(), Some("POIPET"));
        assert_eq!(facts[2].minor.as_deref(), Some("yes"));
        let h = envelope(
            "repatriation.handover",
            1,
            json!({"record": "handover", "handed_over_at": "2026-04-01T10:00:00+07:00",
                   "persons": ["P2", "P1", "P1"]}),
        );
        let facts = extract(&h);
        assert_eq!(facts.len(), 3, "one each, P1 once");
        assert_eq!(facts[0].status.as_deref(), Some("handover"));
        assert_eq!(facts[0].at, 1_775_012_400_000);
        assert_eq!(facts[0].gate, None, "v1 names no gate");
    }
}
