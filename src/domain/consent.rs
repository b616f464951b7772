//! Consent governs sharing (COMMIT guideline 3, need to know): a message
//! whose payload records that the person did not consent to sharing
//! (`consent.to_share_information: false`) crosses only as its agreement
//! says — refused, or reduced to the personal fields the agreement lists
//! as minimal (what nationality verification needs) — unless it declares
//! a lawful basis the agreement names (`consent.lawful_basis`). Sender and
//! receiver apply the same rule; the receiver does not trust the sender to
//! have done it.

use serde_json::Value;

/// What an agreement does with a message sent without consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Without {
    /// Not sent at all (the default: nothing personal crosses unasked).
    #[default]
    Refuse,
    /// Sent with only the listed personal fields.
    Minimal,
}

/// The lawful bases a message may declare, when its agreement names them.
pub const LAWFUL_BASES: &[&str] = &[
    "best_interests_of_child",
    "vital_interest",
    "legal_obligation",
];

/// An agreement's consent rule.
#[derive(Debug, Clone, Default)]
pub struct ConsentRule {
    pub without: Without,
    /// `(type, pointer)`: personal fields kept when consent is withheld.
    pub minimal: Vec<(String, String)>,
    /// Bases that let a message cross as it is.
    pub lawful_bases: Vec<String>,
}

/// What the rule makes of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Consent given, or nothing said of it: as it is.
    Shared,
    /// Consent withheld, crossing on this lawful basis, as it is.
    Basis(String),
    /// Consent withheld: these personal patterns (with `*`) must not cross.
    Minimal(Vec<String>),
    /// Consent withheld and the agreement sends nothing.
    Refused,
}

/// Why a declared basis does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasisError {
    #[error("lawful basis `{basis}` is not one agreement {agreement} names (it names {named:?})")]
    NotNamed {
        basis: String,
        agreement: String,
        named: Vec<String>,
    },
    #[error(
        "lawful basis `best_interests_of_child` needs a child: person.presumed_minor true or an estimated_age under 18"
    )]
    NotAChild,
}

/// Whether the payload records consent to sharing as withheld.
pub fn withheld(payload: &Value) -> bool {
    payload["consent"]["to_share_information"] == Value::Bool(false)
}

/// What a payload says of consent to sharing, if anything (a
/// `referral.notify` always; a `referral.update` when it changes it).
pub fn stated(payload: &Value) -> Option<bool> {
    payload["consent"]["to_share_information"].as_bool()
}

/// Whether the rule applies to a payload: it says consent is withheld,
/// or says nothing of it in a case whose consent stands withdrawn.
pub fn applies(payload: &Value, case_withheld: bool) -> bool {
    stated(payload).map_or(case_withheld, |shared| !shared)
}

/// Whether a case's consent to sharing stands withdrawn: what its latest
/// message that said anything of it said (a `referral.update` with
/// `consent.to_share_information: false` withdraws it; one with `true`
/// gives it again).
pub fn case_withheld(history: &[crate::domain::lifecycle::CaseMessage]) -> bool {
    history
        .iter()
        .rev()
        .find_map(|m| stated(&m.payload))
        .is_some_and(|shared| !shared)
}

impl ConsentRule {
    /// Judges a payload of `message_type` under this rule of `agreement`;
    /// `personal` are the type's personal patterns.
    /// `case_withheld`: the case's consent stands withdrawn (a message
    /// that says nothing of consent follows the case; one that says
    /// follows itself).
    pub fn judge(
        &self,
        agreement: &str,
        message_type: &str,
        payload: &Value,
        personal: &[String],
        case_withheld: bool,
    ) -> Result<Verdict, BasisError> {
        if !applies(payload, case_withheld) {
            return Ok(Verdict::Shared);
        }
        if let Some(basis) = payload["consent"]["lawful_basis"].as_str() {
            if !self.lawful_bases.iter().any(|b| b == basis) {
                return Err(BasisError::NotNamed {
                    basis: basis.to_string(),
                    agreement: agreement.to_string(),
                    named: self.lawful_bases.clone(),
                });
            }
            if basis == "best_interests_of_child" && !is_child(payload) {
                return Err(BasisError::NotAChild);
            }
            return Ok(Verdict::Basis(basis.to_string()));
        }
        // The notice of a withdrawal always crosses (the peer must learn
        // of it), with nothing personal beyond what the rule allows.
        let notice = message_type == "referral.update" && payload["reason"] == "consent_changed";
        if notice {
            return Ok(Verdict::Minimal(
                self.withheld_patterns(message_type, personal),
            ));
        }
        Ok(match self.without {
            Without::Refuse => Verdict::Refused,
            Without::Minimal => Verdict::Minimal(self.withheld_patterns(message_type, personal)),
        })
    }

    /// The personal patterns of `message_type` that do not cross without
    /// consent: all of them under `refuse`, those not listed under `minimal`.
    pub fn withheld_patterns(&self, message_type: &str, personal: &[String]) -> Vec<String> {
        personal
            .iter()
            .filter(|p| {
                self.without == Without::Refuse
                    || !self
                        .minimal
                        .iter()
                        .any(|(t, kept)| t == message_type && kept == *p)
            })
            .cloned()
            .collect()
    }
}

fn is_child(payload: &Value) -> bool {
    let persons: Vec<&Value> = match payload.get("persons").and_then(Value::as_array) {
        Some(all) => all.iter().collect(),
        None => payload.get("person").into_iter().collect(),
    };
    !persons.is_empty()
        && persons.iter().all(|p| {
            p["presumed_minor"] == Value::Bool(true)
                || p["estimated_age"].as_u64().is_some_and(|a| a < 18)
        })
}

/// The placeholder a withheld field that its schema requires carries.
pub const WITHHELD: &str = "[withheld]";

/// Every concrete pointer in `doc` that `pattern` (with `*`) names.
pub fn matches(doc: &Value, pattern: &str) -> Vec<String> {
    fn go(doc: &Value, parts: &[&str], at: String, out: &mut Vec<String>) {
        let Some((first, rest)) = parts.split_first() else {
            if !doc.is_null() {
                out.push(at);
            }
            return;
        };
        match (doc, *first) {
            (Value::Array(items), "*") => {
                for (i, item) in items.iter().enumerate() {
                    go(item, rest, format!("{at}/{i}"), out);
                }
            }
            (Value::Object(map), key) => {
                if let Some(v) = map.get(key) {
                    go(v, rest, format!("{at}/{key}"), out);
                }
            }
            _ => {}
        }
    }
    let parts: Vec<&str> = pattern.split('/').skip(1).collect();
    let mut out = Vec::new();
    go(doc, &parts, String::new(), &mut out);
    out
}

/// Takes every field `patterns` name out of `payload`; one its schema
/// requires (`required`, patterns too) keeps its place with
/// [`WITHHELD`]. The concrete pointers taken, in order.
pub fn reduce(payload: &mut Value, patterns: &[String], required: &[String]) -> Vec<String> {
    let mut taken = Vec::new();
    for pattern in patterns {
        // Deepest first, so removing one does not shift the next.
        let mut found = matches(payload, pattern);
        found.reverse();
        let keep_place = required.iter().any(|r| r == pattern);
        for pointer in found {
            let Some((parent, key)) = pointer.rsplit_once('/') else {
                continue;
            };
            let Some(Value::Object(map)) = payload.pointer_mut(parent) else {
                continue;
            };
            if map.get(key).is_some_and(|v| v == WITHHELD) {
                continue;
            }
            if keep_place {
                map.insert(key.to_string(), Value::String(WITHHELD.into()));
            } else {
                map.remove(key);
            }
            taken.push(pointer);
        }
    }
    taken.sort();
    taken
}

/// The first field `patterns` name that `payload` still carries (a
/// placeholder does not count): what a receiver refuses.
pub fn carried(payload: &Value, patterns: &[String]) -> Option<String> {
    patterns
        .iter()
        .flat_map(|p| matches(payload, p))
        .find(|pointer| payload.pointer(pointer).is_some_and(|v| v != WITHHELD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn personal() -> Vec<String> {
        [
            "/person/name_latin",
            "/person/name_native",
            "/person/identity_documents/*/number",
            "/consent/recorded_by",
        ]
        .map(String::from)
        .to_vec()
    }

    fn payload(share: bool) -> Value {
        json!({
            "person": {"name_latin": "Test Person", "name_native": "តេស្ត", "sex": "male",
                "estimated_age": 30,
                "identity_documents": [{"type": "passport", "number": "N1"}, {"type": "national_id", "number": "N2"}]},
            "consent": {"to_share_information": share, "recorded_by": "Synthetic social worker"},
        })
    }

    fn minimal_rule() -> ConsentRule {
        ConsentRule {
            without: Without::Minimal,
            minimal: vec![
                (
                    "referral.notify".into(),
                    "/person/identity_documents/*/number".into(),
                ),
                ("referral.notify".into(), "/consent/recorded_by".into()),
            ],
            lawful_bases: vec!["vital_interest".into(), "best_interests_of_child".into()],
        }
    }

    #[test]
    fn consent_given_shares_and_withheld_refuses_by_default() {
        let rule = ConsentRule::default();
        assert_eq!(
            rule.judge(
                "kh-th",
                "referral.notify",
                &payload(true),
                &personal(),
                false
            ),
            Ok(Verdict::Shared)
        );
        assert_eq!(
            rule.judge(
                "kh-th",
                "referral.notify",
                &payload(false),
                &personal(),
                false
            ),
            Ok(Verdict::Refused)
        );
    }

    #[test]
    fn minimal_reduces_to_the_list_and_keeps_required_places() {
        let rule = minimal_rule();
        let mut p = payload(false);
        let Ok(Verdict::Minimal(patterns)) =
            rule.judge("kh-th", "referral.notify", &p, &personal(), false)
        else {
            panic!("minimal");
        };
        assert_eq!(patterns, ["/person/name_latin", "/person/name_native"]);
        let taken = reduce(&mut p, &patterns, &["/person/name_latin".into()]);
        assert_eq!(taken, ["/person/name_latin", "/person/name_native"]);
        assert_eq!(p["person"]["name_latin"], WITHHELD);
        assert!(p["person"].get("name_native").is_none());
        assert_eq!(p["person"]["identity_documents"][1]["number"], "N2");
        assert_eq!(carried(&p, &patterns), None);
        assert_eq!(
            carried(&payload(false), &patterns).as_deref(),
            Some("/person/name_latin")
        );
        // Reducing again takes nothing more.
        assert!(reduce(&mut p, &patterns, &["/person/name_latin".into()]).is_empty());
    }

    #[test]
    fn a_message_silent_on_consent_follows_its_case() {
        let rule = ConsentRule::default();
        let silent = json!({"person": {"name_latin": "Test Person"}});
        assert_eq!(
            rule.judge(
                "kh-th",
                "family-tracing.request",
                &silent,
                &personal(),
                false
            ),
            Ok(Verdict::Shared)
        );
        assert_eq!(
            rule.judge(
                "kh-th",
                "family-tracing.request",
                &silent,
                &personal(),
                true
            ),
            Ok(Verdict::Refused)
        );
        // The notice of a withdrawal crosses even under `refuse`, reduced.
        let notice = json!({"reason": "consent_changed", "consent": {"to_share_information": false, "recorded_by": "x"}});
        assert_eq!(
            rule.judge("kh-th", "referral.update", &notice, &personal(), false),
            Ok(Verdict::Minimal(personal()))
        );
        // One that gives consent again follows itself.
        assert_eq!(
            rule.judge(
                "kh-th",
                "referral.update",
                &payload(true),
                &personal(),
                true
            ),
            Ok(Verdict::Shared)
        );
    }

    #[test]
    fn a_lawful_basis_must_be_named_and_hold() {
        let rule = minimal_rule();
        let mut p = payload(false);
        p["consent"]["lawful_basis"] = json!("vital_interest");
        assert_eq!(
            rule.judge("kh-th", "referral.notify", &p, &personal(), false),
            Ok(Verdict::Basis("vital_interest".into()))
        );
        p["consent"]["lawful_basis"] = json!("legal_obligation");
        assert!(matches!(
            rule.judge("kh-th", "referral.notify", &p, &personal(), false),
            Err(BasisError::NotNamed { .. })
        ));
        p["consent"]["lawful_basis"] = json!("best_interests_of_child");
        assert_eq!(
            rule.judge("kh-th", "referral.notify", &p, &personal(), false),
            Err(BasisError::NotAChild)
        );
        p["person"]["estimated_age"] = json!(15);
        assert_eq!(
            rule.judge("kh-th", "referral.notify", &p, &personal(), false),
            Ok(Verdict::Basis("best_interests_of_child".into()))
        );
    }

    #[test]
    fn wildcards_match_every_item() {
        let p = payload(true);
        assert_eq!(
            matches(&p, "/person/identity_documents/*/number"),
            [
                "/person/identity_documents/0/number",
                "/person/identity_documents/1/number"
            ]
        );
        assert!(matches(&p, "/nothing/*/here").is_empty());
    }
}
