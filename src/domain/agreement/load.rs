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
    #[serde(default)]
    gates: Vec<GateFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFile {
    code: String,
    mode: String,
    checkpoints: Vec<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
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
    /// The schema versions the corridor uses; every known one by default.
    #[serde(default)]
    versions: Option<Vec<u32>>,
}

/// One agreement, checked against what `known` says exists.
pub(super) fn parse_agreement(
    id: &str,
    file: &str,
    text: &str,
    known: &Known<'_>,
) -> Result<Agreement, AgreementLoadError> {
    let known_type = &|t: &str| known.knows_type(t);
    let personal = known.personal;
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
        let versions = message_versions(
            &format!("messages[{i}].versions"),
            &m.message_type,
            m.versions,
            &(known.versions)(&m.message_type),
        )
        .map_err(|(key, message)| invalid(key, message))?;
        messages.push(MessageRule {
            message_type: m.message_type,
            senders: m.senders,
            expects,
            versions,
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
    let gates = gates(raw.gates, &raw.parties).map_err(|(key, message)| invalid(key, message))?;
    Ok(Agreement {
        gates,
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

/// A bad value: its key, and what is wrong.
type Bad = (String, String);

/// The versions `[[messages]]` entry `key` pins for `message_type`: every
/// `known` one when it names none, else a non-empty list of known versions,
/// each once.
fn message_versions(
    key: &str,
    message_type: &str,
    pinned: Option<Vec<u32>>,
    known: &[u32],
) -> Result<Vec<u32>, Bad> {
    let Some(mut pinned) = pinned else {
        return Ok(known.to_vec());
    };
    if pinned.is_empty() {
        return Err((
            key.to_string(),
            format!(
                "must name at least one version of `{message_type}` (leave the key out for every known one: {known:?})"
            ),
        ));
    }
    for (j, v) in pinned.iter().enumerate() {
        if !known.contains(v) {
            return Err((
                format!("{key}[{j}]"),
                format!("`{message_type}` has no schema version {v}; known versions: {known:?}"),
            ));
        }
        if pinned[..j].contains(v) {
            return Err((
                format!("{key}[{j}]"),
                format!("version {v} is listed twice"),
            ));
        }
    }
    pinned.sort_unstable();
    Ok(pinned)
}

/// The `[[gates]]` of an agreement between `parties`: each code of the
/// schemas' form and listed once, a known mode, exactly two checkpoints
/// (in the order of `parties`), and a name in English and in the language
/// of each party.
fn gates(raw: Vec<GateFile>, parties: &[String]) -> Result<Vec<Gate>, Bad> {
    let mut gates: Vec<Gate> = Vec::new();
    for (i, g) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("gates[{i}].{k}");
        if !is_gate_code(&g.code) {
            return Err((
                key("code"),
                format!(
                    "`{}` is not a gate code: capital letters, digits and `_`, 2 to 32, e.g. `POIPET` ({GATE_CODE_PATTERN})",
                    g.code
                ),
            ));
        }
        if let Some(j) = gates.iter().position(|other| other.code == g.code) {
            return Err((
                key("code"),
                format!("`{}` is already the code of gates[{j}]", g.code),
            ));
        }
        let mode = GateMode::parse(&g.mode).ok_or_else(|| {
            (
                key("mode"),
                format!("`{}`: must be `land`, `air` or `sea`", g.mode),
            )
        })?;
        let checkpoints: [String; 2] = g.checkpoints.try_into().map_err(|c: Vec<String>| {
            (
                key("checkpoints"),
                format!(
                    "must name exactly two checkpoints, {}'s then {}'s, not {}",
                    parties[0],
                    parties[1],
                    c.len()
                ),
            )
        })?;
        if let Some(j) = checkpoints.iter().position(|c| c.trim().is_empty()) {
            return Err((
                format!("gates[{i}].checkpoints[{j}]"),
                "must not be empty".into(),
            ));
        }
        let mut languages = vec!["en"];
        languages.extend(parties.iter().filter_map(|p| language_of(p)));
        for lang in languages {
            if g.names.get(lang).is_none_or(|n| n.trim().is_empty()) {
                return Err((
                    key("names"),
                    format!(
                        "needs the gate's name in `{lang}` (English and each party's language: {})",
                        parties
                            .iter()
                            .map(|p| format!("{p} {}", language_of(p).unwrap_or("?")))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        gates.push(Gate {
            code: g.code,
            mode,
            checkpoints,
            names: g.names,
        });
    }
    Ok(gates)
}

fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| e.to_string())
}
