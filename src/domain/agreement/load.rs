//! Reading one agreement file: its TOML shape, and every check that
//! refuses a bad value naming the file and the key.

use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreementFile {
    title: String,
    instrument: String,
    year: u16,
    parties: Vec<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    messages: Vec<MessageFile>,
    #[serde(default)]
    personal_data: PersonalDataFile,
    #[serde(default = "default_retention_days")]
    retention_days: u32,
    #[serde(default)]
    signing: SigningFile,
    #[serde(default)]
    consent: ConsentFile,
    /// Types a mission may send itself.
    #[serde(default)]
    embassy_may_send: Vec<String>,
    /// Read as any value so a non-boolean is refused naming this key.
    #[serde(default)]
    require_officer: Option<figment::value::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConsentFile {
    /// `refuse` (default) or `minimal`.
    #[serde(default)]
    without: Option<String>,
    /// `"<type>:<pointer>"`: x-personal fields kept under `minimal`.
    #[serde(default)]
    minimal: Vec<String>,
    #[serde(default)]
    lawful_bases: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SigningFile {
    #[serde(default)]
    required: bool,
}

fn default_retention_days() -> u32 {
    365
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PersonalDataFile {
    /// `"<type>:<pointer>"` entries naming x-personal fields not to share.
    #[serde(default)]
    withheld: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFile {
    #[serde(rename = "type")]
    message_type: String,
    senders: Vec<String>,
    #[serde(default)]
    expects: Option<String>,
    #[serde(default)]
    deadline: Option<String>,
}

/// All agreements a node knows.
pub(super) fn parse_agreement(
    id: &str,
    file: &str,
    text: &str,
    known_type: &dyn Fn(&str) -> bool,
    personal: &dyn Fn(&str) -> Vec<String>,
) -> Result<Agreement, AgreementLoadError> {
    let raw: AgreementFile = toml_parse(text).map_err(|message| AgreementLoadError::Parse {
        file: file.to_string(),
        message,
    })?;
    let _ = raw.notes;
    let invalid = |key: String, message: String| AgreementLoadError::Invalid {
        file: file.to_string(),
        key,
        message,
    };
    if raw.parties.len() != 2 || raw.parties[0] == raw.parties[1] {
        return Err(invalid(
            "parties".into(),
            "must name exactly two different countries".into(),
        ));
    }
    for (i, p) in raw.parties.iter().enumerate() {
        if !is_known_country(p) {
            return Err(invalid(
                format!("parties[{i}]"),
                format!("unknown country `{p}`"),
            ));
        }
    }
    let mut seen = BTreeMap::new();
    let mut messages = Vec::new();
    for (i, m) in raw.messages.into_iter().enumerate() {
        if !known_type(&m.message_type) {
            return Err(invalid(
                format!("messages[{i}].type"),
                format!("unknown message type `{}`", m.message_type),
            ));
        }
        if seen.insert(m.message_type.clone(), i).is_some() {
            return Err(invalid(
                format!("messages[{i}].type"),
                format!("`{}` is listed twice", m.message_type),
            ));
        }
        if m.senders.is_empty() {
            return Err(invalid(
                format!("messages[{i}].senders"),
                "must name at least one party".into(),
            ));
        }
        for (j, s) in m.senders.iter().enumerate() {
            if !raw.parties.contains(s) {
                return Err(invalid(
                    format!("messages[{i}].senders[{j}]"),
                    format!("`{s}` is not a party to this agreement"),
                ));
            }
        }
        let expects = match (m.expects, m.deadline) {
            (None, None) => None,
            (Some(t), Some(d)) => {
                if !known_type(&t) {
                    return Err(invalid(
                        format!("messages[{i}].expects"),
                        format!("unknown message type `{t}`"),
                    ));
                }
                let deadline = Deadline::parse(&d).ok_or_else(|| {
                    invalid(
                        format!("messages[{i}].deadline"),
                        format!("cannot parse `{d}`; write e.g. `3 days`, `24 hours`, `10 business_days`"),
                    )
                })?;
                Some((t, deadline))
            }
            (Some(_), None) => {
                return Err(invalid(
                    format!("messages[{i}].deadline"),
                    "required when `expects` is set".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    format!("messages[{i}].expects"),
                    "required when `deadline` is set".into(),
                ));
            }
        };
        messages.push(MessageRule {
            message_type: m.message_type,
            senders: m.senders,
            expects,
        });
    }
    // `<type>:<pointer>` naming a field the type's schema marks x-personal.
    let personal_field = |key: String, entry: &str| {
        let (t, pointer) = entry
            .split_once(':')
            .ok_or_else(|| invalid(key.clone(), format!("`{entry}`: write `<type>:<pointer>`")))?;
        if !known_type(t) {
            return Err(invalid(key, format!("unknown message type `{t}`")));
        }
        if !personal(t).iter().any(|p| p == pointer) {
            return Err(invalid(
                key,
                format!(
                    "`{pointer}` is not a field `{t}` marks x-personal; known: {:?}",
                    personal(t)
                ),
            ));
        }
        Ok((t.to_string(), pointer.to_string()))
    };
    let mut withheld = Vec::new();
    for (i, entry) in raw.personal_data.withheld.iter().enumerate() {
        withheld.push(personal_field(
            format!("personal_data.withheld[{i}]"),
            entry,
        )?);
    }
    let without = match raw.consent.without.as_deref() {
        None | Some("refuse") => crate::domain::consent::Without::Refuse,
        Some("minimal") => crate::domain::consent::Without::Minimal,
        Some(other) => {
            return Err(invalid(
                "consent.without".into(),
                format!("`{other}`: must be `refuse` or `minimal`"),
            ));
        }
    };
    for (i, t) in raw.embassy_may_send.iter().enumerate() {
        if !known_type(t) {
            return Err(invalid(
                format!("embassy_may_send[{i}]"),
                format!("unknown message type `{t}`"),
            ));
        }
    }
    let mut minimal = Vec::new();
    for (i, entry) in raw.consent.minimal.iter().enumerate() {
        minimal.push(personal_field(format!("consent.minimal[{i}]"), entry)?);
    }
    for (i, basis) in raw.consent.lawful_bases.iter().enumerate() {
        if !crate::domain::consent::LAWFUL_BASES.contains(&basis.as_str()) {
            return Err(invalid(
                format!("consent.lawful_bases[{i}]"),
                format!(
                    "`{basis}` is not a lawful basis; known: {:?}",
                    crate::domain::consent::LAWFUL_BASES
                ),
            ));
        }
    }
    let require_officer = match &raw.require_officer {
        None => false,
        Some(figment::value::Value::Bool(_, b)) => *b,
        Some(other) => {
            return Err(invalid(
                "require_officer".into(),
                format!("must be true or false, not {}", other.to_actual()),
            ));
        }
    };
    Ok(Agreement {
        id: id.to_string(),
        title: raw.title,
        instrument: raw.instrument,
        year: raw.year,
        parties: [raw.parties[0].clone(), raw.parties[1].clone()],
        messages,
        withheld,
        retention_days: raw.retention_days,
        signing_required: raw.signing.required,
        require_officer,
        embassy_may_send: raw.embassy_may_send,
        consent: crate::domain::consent::ConsentRule {
            without,
            minimal,
            lawful_bases: raw.consent.lawful_bases,
        },
    })
}

fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}
