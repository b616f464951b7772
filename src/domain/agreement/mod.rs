//! Bilateral agreements (SOPs / MOUs) as data. Each file in
//! `config/agreements/` names two parties, the instrument, and which message
//! types may flow in which direction with the answer each expects, which
//! schema versions of each the corridor uses, and its border gates. No
//! agreement, no exchange.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

mod gate;
mod load;

pub use gate::{GATE_CODE_PATTERN, Gate, GateMode, is_gate_code, language_of};

use load::parse_agreement;

/// Countries Homeward knows: the COMMIT countries and Malaysia.
const KNOWN_COUNTRIES: &[&str] = &["KH", "CN", "LA", "MM", "TH", "VN", "MY"];

pub fn is_known_country(code: &str) -> bool {
    KNOWN_COUNTRIES.contains(&code)
}

#[derive(Debug, thiserror::Error)]
pub enum AgreementLoadError {
    #[error("cannot read agreements directory {dir}: {source}")]
    Dir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agreement {file}: {message}")]
    Parse { file: String, message: String },
    #[error("agreement {file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// Why a message may not flow.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AgreementError {
    #[error("no agreement between {from} and {to}: messages between them are not allowed")]
    NoAgreement { from: String, to: String },
    #[error(
        "agreement `{}` ({}) does not allow `{}` from {} to {}; allowed from {}: {:?}",
        .0.agreement, .0.title, .0.message_type, .0.from, .0.to, .0.from, .0.allowed
    )]
    TypeNotAllowed(Box<TypeNotAllowed>),
}

/// Details of [`AgreementError::TypeNotAllowed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeNotAllowed {
    pub agreement: String,
    pub title: String,
    pub message_type: String,
    pub from: String,
    pub to: String,
    pub allowed: Vec<String>,
}

/// A deadline as written in an agreement: `"3 days"`, `"24 hours"`,
/// `"10 business_days"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    Hours(u32),
    Days(u32),
    BusinessDays(u32),
}

impl Deadline {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        let n: u32 = parts.next()?.parse().ok()?;
        let unit = parts.next()?;
        if parts.next().is_some() || n == 0 {
            return None;
        }
        match unit {
            "hour" | "hours" => Some(Self::Hours(n)),
            "day" | "days" => Some(Self::Days(n)),
            "business_day" | "business_days" => Some(Self::BusinessDays(n)),
            _ => None,
        }
    }

    /// Calendar length, ignoring business-day calendars.
    pub fn approx(&self) -> Duration {
        match *self {
            Self::Hours(h) => Duration::from_secs(u64::from(h) * 3600),
            Self::Days(d) | Self::BusinessDays(d) => Duration::from_secs(u64::from(d) * 86_400),
        }
    }
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hours(n) => write!(f, "{n} hours"),
            Self::Days(n) => write!(f, "{n} days"),
            Self::BusinessDays(n) => write!(f, "{n} business_days"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MessageRule {
    pub message_type: String,
    /// Parties that may send this type.
    pub senders: Vec<String>,
    /// The answer this type expects, and within how long.
    pub expects: Option<(String, Deadline)>,
    /// The schema versions this corridor uses for the type, ascending
    /// (`versions = [1, 2]`; by default every version the schema registry
    /// knows). A message of another version is refused
    /// (`schema_version_not_agreed`).
    pub versions: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Agreement {
    /// File stem, e.g. `kh-th`.
    pub id: String,
    pub title: String,
    pub instrument: String,
    pub year: u16,
    pub parties: [String; 2],
    pub messages: Vec<MessageRule>,
    /// Personal fields (`type` → payload pointers, `*` for any array index)
    /// that must not cross under this agreement.
    pub withheld: Vec<(String, String)>,
    /// Days after a case is closed or withdrawn before its payloads are purged.
    pub retention_days: u32,
    /// Both sides sign every envelope and receipt: an unsigned one is
    /// refused (`[signing] required = true`, once both have moved).
    pub signing_required: bool,
    /// A submission under this agreement must name the officer behind it
    /// (`On-Behalf-Of`).
    pub require_officer: bool,
    /// What may cross when the person did not consent to sharing.
    pub consent: super::consent::ConsentRule,
    /// Message types a consular mission (role `embassy`) may send itself.
    pub embassy_may_send: Vec<String>,
    /// The corridor's border gates (`[[gates]]`), in file order.
    gates: Vec<Gate>,
}

impl Agreement {
    pub fn involves(&self, a: &str, b: &str) -> bool {
        (self.parties[0] == a && self.parties[1] == b)
            || (self.parties[0] == b && self.parties[1] == a)
    }

    /// The corridor's border gates, in file order.
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// The gate with `code`, if the agreement lists it.
    pub fn gate(&self, code: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.code == code)
    }

    /// `gate`'s checkpoint in `country` (a party), e.g. `Poipet` for KH.
    pub fn checkpoint_in<'g>(&self, gate: &'g Gate, country: &str) -> Option<&'g str> {
        self.parties
            .iter()
            .position(|p| p == country)
            .map(|i| gate.checkpoints[i].as_str())
    }

    /// The schema versions of `message_type` this corridor uses; empty when
    /// the agreement does not list the type.
    pub fn versions(&self, message_type: &str) -> &[u32] {
        self.rule(message_type)
            .map_or(&[], |r| r.versions.as_slice())
    }

    pub fn rule(&self, message_type: &str) -> Option<&MessageRule> {
        self.messages
            .iter()
            .find(|m| m.message_type == message_type)
    }

    /// The first withheld personal field present in a payload of `message_type`.
    pub fn withheld_in(&self, message_type: &str, payload: &serde_json::Value) -> Option<&str> {
        self.withheld
            .iter()
            .filter(|(t, _)| t == message_type)
            .map(|(_, p)| p.as_str())
            .find(|p| super::message::pointer_present(payload, p))
    }

    fn allowed_from(&self, from: &str) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.senders.iter().any(|s| s == from))
            .map(|m| m.message_type.clone())
            .collect()
    }
}

/// What the loader checks an agreement against: the schema registry's
/// knowledge, as functions (tests give their own).
struct Known<'a> {
    /// The schema versions of a type, ascending; empty: no such type.
    versions: &'a dyn Fn(&str) -> Vec<u32>,
    /// The x-personal pointers of a type.
    personal: &'a dyn Fn(&str) -> Vec<String>,
}

impl Known<'_> {
    fn knows_type(&self, message_type: &str) -> bool {
        !(self.versions)(message_type).is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct AgreementBook {
    agreements: Vec<Agreement>,
}

impl AgreementBook {
    /// Loads every `*.toml` in `dir`, checked against `registry`'s types,
    /// versions and personal fields.
    pub fn load(
        dir: &Path,
        registry: &super::message::SchemaRegistry,
    ) -> Result<Self, AgreementLoadError> {
        Self::load_with(
            dir,
            &Known {
                versions: &|t: &str| registry.versions(t),
                personal: &|t: &str| registry.personal_pointers(t),
            },
        )
    }

    fn load_with(dir: &Path, known: &Known<'_>) -> Result<Self, AgreementLoadError> {
        let entries = std::fs::read_dir(dir).map_err(|source| AgreementLoadError::Dir {
            dir: dir.display().to_string(),
            source,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut agreements = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| AgreementLoadError::Parse {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            agreements.push(parse_agreement(
                &id,
                &path.display().to_string(),
                &text,
                known,
            )?);
        }
        for (i, a) in agreements.iter().enumerate() {
            if let Some(b) = agreements[..i]
                .iter()
                .find(|b| b.involves(&a.parties[0], &a.parties[1]))
            {
                return Err(AgreementLoadError::Invalid {
                    file: a.id.clone(),
                    key: "parties".into(),
                    message: format!("`{}` already covers these parties", b.id),
                });
            }
        }
        Ok(Self { agreements })
    }

    pub fn between(&self, a: &str, b: &str) -> Option<&Agreement> {
        self.agreements.iter().find(|ag| ag.involves(a, b))
    }

    /// Retention of a case, by the agreement between the two countries its
    /// reference names (365 days when there is none).
    pub fn retention_days_of(&self, case_ref: &str) -> u32 {
        super::ids::CaseRef::parse(case_ref)
            .and_then(|c| self.between(c.host(), c.origin()))
            .map_or(365, |ag| ag.retention_days)
    }

    pub fn all(&self) -> &[Agreement] {
        &self.agreements
    }

    /// Checks that `message_type` may flow from `from` to `to`.
    pub fn permit(
        &self,
        from: &str,
        to: &str,
        message_type: &str,
    ) -> Result<&Agreement, AgreementError> {
        let agreement = self
            .between(from, to)
            .ok_or_else(|| AgreementError::NoAgreement {
                from: from.to_string(),
                to: to.to_string(),
            })?;
        match agreement.rule(message_type) {
            Some(rule) if rule.senders.iter().any(|s| s == from) => Ok(agreement),
            _ => Err(AgreementError::TypeNotAllowed(Box::new(TypeNotAllowed {
                agreement: agreement.id.clone(),
                title: agreement.title.clone(),
                message_type: message_type.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                allowed: agreement.allowed_from(from),
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(t: &str) -> Vec<u32> {
        match t {
            "referral.notify" => vec![1, 2],
            "referral.acknowledge" => vec![1],
            _ => vec![],
        }
    }

    fn personal(t: &str) -> Vec<String> {
        if t == "referral.notify" {
            vec![
                "/person/name_latin".into(),
                "/person/identity_documents/*/number".into(),
            ]
        } else {
            vec![]
        }
    }

    pub(super) fn parse(text: &str) -> Result<Agreement, AgreementLoadError> {
        let known = Known {
            versions: &versions,
            personal: &personal,
        };
        parse_agreement("kh-th", "kh-th.toml", text, &known)
    }

    pub(super) const GOOD: &str = r#"
title = "Test MOU"
instrument = "MOU"
year = 2014
parties = ["KH", "TH"]
[[messages]]
type = "referral.notify"
senders = ["KH", "TH"]
expects = "referral.acknowledge"
deadline = "3 days"
[[messages]]
type = "referral.acknowledge"
senders = ["KH"]
"#;

    #[test]
    fn permits_and_refuses_with_the_agreement_named() {
        let a = parse(GOOD).unwrap();
        let book = AgreementBook {
            agreements: vec![a],
        };
        assert!(book.permit("TH", "KH", "referral.notify").is_ok());
        let err = book.permit("TH", "KH", "referral.acknowledge").unwrap_err();
        assert!(err.to_string().contains("kh-th"), "{err}");
        let err = book.permit("VN", "KH", "referral.notify").unwrap_err();
        assert_eq!(
            err,
            AgreementError::NoAgreement {
                from: "VN".into(),
                to: "KH".into()
            }
        );
    }

    #[test]
    fn loader_names_file_and_key() {
        let bad = GOOD.replace("3 days", "three days");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("kh-th.toml") && err.contains("messages[0].deadline"),
            "{err}"
        );
        let bad = GOOD.replace("\"KH\", \"TH\"]\n[[", "\"KH\", \"XX\"]\n[[");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("parties[1]"), "{err}");
        let bad = GOOD.replace(
            "type = \"referral.acknowledge\"",
            "type = \"referral.bogus\"",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("messages[1].type"), "{err}");
    }

    #[test]
    fn withheld_personal_fields_are_checked_and_found() {
        let text = format!(
            "{GOOD}\n[personal_data]\nwithheld = [\"referral.notify:/person/identity_documents/*/number\"]\n"
        );
        let a = parse(&text).unwrap();
        let payload = serde_json::json!({"person": {"identity_documents": [{"type": "passport", "number": "N0000001"}]}});
        assert_eq!(
            a.withheld_in("referral.notify", &payload),
            Some("/person/identity_documents/*/number")
        );
        assert_eq!(
            a.withheld_in("referral.notify", &serde_json::json!({"person": {}})),
            None
        );
        let bad =
            format!("{GOOD}\n[personal_data]\nwithheld = [\"referral.notify:/person/sex\"]\n");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("personal_data.withheld[0]") && err.contains("x-personal"),
            "{err}"
        );
    }

    #[test]
    fn require_officer_is_a_boolean_off_by_default() {
        assert!(!parse(GOOD).unwrap().require_officer);
        let on = GOOD.replace("year = 2014", "year = 2014\nrequire_officer = true");
        assert!(parse(&on).unwrap().require_officer);
        for bad in ["\"yes\"", "1", "[true]"] {
            let text = GOOD.replace(
                "year = 2014",
                &format!("year = 2014\nrequire_officer = {bad}"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("kh-th.toml") && err.contains("`require_officer`"),
                "{err}"
            );
        }
    }

    #[test]
    fn versions_default_to_every_known_one_and_may_be_pinned() {
        let a = parse(GOOD).unwrap();
        assert_eq!(a.versions("referral.notify"), [1, 2]);
        assert_eq!(a.versions("referral.acknowledge"), [1]);
        assert!(a.versions("referral.update").is_empty());
        let pinned = GOOD.replace(
            "deadline = \"3 days\"",
            "deadline = \"3 days\"\nversions = [2, 1]",
        );
        assert_eq!(parse(&pinned).unwrap().versions("referral.notify"), [1, 2]);
        let only = GOOD.replace(
            "deadline = \"3 days\"",
            "deadline = \"3 days\"\nversions = [1]",
        );
        assert_eq!(parse(&only).unwrap().versions("referral.notify"), [1]);
    }

    #[test]
    fn bad_versions_are_refused_naming_file_and_key() {
        for (versions, key, says) in [
            ("[]", "messages[0].versions`", "at least one version"),
            ("[1, 3]", "messages[0].versions[1]`", "no schema version 3"),
            ("[2, 2]", "messages[0].versions[1]`", "listed twice"),
        ] {
            let text = GOOD.replace(
                "deadline = \"3 days\"",
                &format!("deadline = \"3 days\"\nversions = {versions}"),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("kh-th.toml") && err.contains(key) && err.contains(says),
                "{versions}: {err}"
            );
        }
        // A version the type lacks, on a type with one version.
        let text = format!("{GOOD}versions = [2]\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("messages[1].versions[0]"), "{err}");
    }

    #[test]
    fn deadlines_parse() {
        assert_eq!(Deadline::parse("3 days"), Some(Deadline::Days(3)));
        assert_eq!(Deadline::parse("24 hours"), Some(Deadline::Hours(24)));
        assert_eq!(
            Deadline::parse("10 business_days"),
            Some(Deadline::BusinessDays(10))
        );
        assert_eq!(Deadline::parse("0 days"), None);
        assert_eq!(Deadline::parse("3 weeks"), None);
    }
}
