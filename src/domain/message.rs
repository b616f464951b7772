//! Messages: the envelope every message carries and the registry of JSON
//! Schemas (draft 2020-12) that validate envelopes and payloads. Schemas are
//! embedded in the binary from `schemas/` and compiled once at start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::ids::CaseRef;
use crate::protocol::Detail;

/// The envelope schema (`schemas/envelope.v1.json`), as published.
pub const ENVELOPE_SCHEMA: &str = include_str!("../../schemas/envelope.v1.json");

/// Every payload schema: (type, version, source). Versions of one type
/// coexist: each message names its own (`schema_version`) and is validated,
/// stored and delivered by that version's schema. Version 2 added
/// `referral.notify` `recruitment_channel`, `repatriation.request`
/// `return_channel` and `gate`, and `repatriation.handover` `gate`.
pub const PAYLOAD_SCHEMAS: &[(&str, u32, &str)] = &[
    (
        "referral.notify",
        1,
        include_str!("../../schemas/referral.notify.v1.json"),
    ),
    (
        "referral.notify",
        2,
        include_str!("../../schemas/referral.notify.v2.json"),
    ),
    (
        "referral.acknowledge",
        1,
        include_str!("../../schemas/referral.acknowledge.v1.json"),
    ),
    (
        "referral.update",
        1,
        include_str!("../../schemas/referral.update.v1.json"),
    ),
    (
        "referral.withdraw",
        1,
        include_str!("../../schemas/referral.withdraw.v1.json"),
    ),
    (
        "family-tracing.request",
        1,
        include_str!("../../schemas/family-tracing.request.v1.json"),
    ),
    (
        "family-tracing.result",
        1,
        include_str!("../../schemas/family-tracing.result.v1.json"),
    ),
    (
        "repatriation.request",
        1,
        include_str!("../../schemas/repatriation.request.v1.json"),
    ),
    (
        "repatriation.request",
        2,
        include_str!("../../schemas/repatriation.request.v2.json"),
    ),
    (
        "repatriation.confirm",
        1,
        include_str!("../../schemas/repatriation.confirm.v1.json"),
    ),
    (
        "repatriation.handover",
        1,
        include_str!("../../schemas/repatriation.handover.v1.json"),
    ),
    (
        "repatriation.handover",
        2,
        include_str!("../../schemas/repatriation.handover.v2.json"),
    ),
    (
        "reintegration.report",
        1,
        include_str!("../../schemas/reintegration.report.v1.json"),
    ),
];

/// The routing part of every message. Field names follow DESIGN.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub message_id: Uuid,
    pub case_ref: String,
    #[serde(rename = "type")]
    pub message_type: String,
    pub schema_version: u32,
    pub from: String,
    pub to: String,
    pub in_reply_to: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Shared with the lifecycle's view of the message
    /// ([`super::lifecycle::CaseMessage`]) rather than copied into it.
    #[serde(deserialize_with = "shared_value")]
    pub payload: std::sync::Arc<Value>,
    /// `mission` when the sender's embassy submitted it (set by the
    /// sending gateway).
    #[serde(default)]
    pub sent_by: Option<String>,
}

fn shared_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::sync::Arc<Value>, D::Error> {
    Value::deserialize(d).map(std::sync::Arc::new)
}

impl Envelope {
    /// The case reference, parsed into the two countries it names.
    pub fn case(&self) -> Option<CaseRef<'_>> {
        CaseRef::parse(&self.case_ref)
    }
}

/// One schema violation, located by JSON pointer into the whole envelope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

impl From<Violation> for Detail {
    fn from(v: Violation) -> Self {
        Detail {
            pointer: Some(v.pointer),
            keyword: Some(v.keyword),
            message: v.message,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum MessageError {
    #[error("the message does not match its schema ({} violation(s))", .0.len())]
    Invalid(Vec<Violation>),
    #[error("unknown message type `{message_type}`; known types: {known:?}")]
    UnknownType {
        message_type: String,
        known: Vec<String>,
    },
    #[error("`{message_type}` has no schema version {version}; supported versions: {supported:?}")]
    UnsupportedVersion {
        message_type: String,
        version: u64,
        supported: Vec<u32>,
    },
}

impl MessageError {
    pub fn details(&self) -> Vec<Detail> {
        match self {
            Self::Invalid(v) => v.iter().cloned().map(Detail::from).collect(),
            Self::UnknownType { .. } => vec![Detail {
                pointer: Some("/type".into()),
                keyword: Some("known_type".into()),
                message: self.to_string(),
            }],
            Self::UnsupportedVersion { .. } => vec![Detail {
                pointer: Some("/schema_version".into()),
                keyword: Some("supported_version".into()),
                message: self.to_string(),
            }],
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "schema_violation",
            Self::UnknownType { .. } => "unknown_type",
            Self::UnsupportedVersion { .. } => "unsupported_schema_version",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("schema {name} does not compile: {message}")]
pub struct SchemaCompileError {
    name: String,
    message: String,
}

struct PayloadSchema {
    source: Value,
    validator: jsonschema::Validator,
}

/// Compiled validators for the envelope and every (type, version).
pub struct SchemaRegistry {
    envelope: jsonschema::Validator,
    envelope_source: Value,
    payloads: BTreeMap<(String, u32), PayloadSchema>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("types", &self.payloads.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn compile(name: &str, text: &str) -> Result<(Value, jsonschema::Validator), SchemaCompileError> {
    let err = |message: String| SchemaCompileError {
        name: name.to_string(),
        message,
    };
    let source: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&source)
        .map_err(|e| err(e.to_string()))?;
    Ok((source, validator))
}

fn violations(validator: &jsonschema::Validator, instance: &Value, prefix: &str) -> Vec<Violation> {
    validator
        .iter_errors(instance)
        .map(|e| Violation {
            pointer: format!("{prefix}{}", e.instance_path().as_str()),
            keyword: e.kind().keyword().to_string(),
            // Masked: the offending value is personal data more often than
            // not, and error bodies end up in logs and operators' views.
            message: e.masked().to_string(),
        })
        .collect()
}

impl SchemaRegistry {
    /// Compiles the embedded schemas.
    pub fn embedded() -> Result<Self, SchemaCompileError> {
        let (envelope_source, envelope) = compile("envelope.v1", ENVELOPE_SCHEMA)?;
        let mut payloads = BTreeMap::new();
        for (message_type, version, text) in PAYLOAD_SCHEMAS {
            let (source, validator) = compile(&format!("{message_type}.v{version}"), text)?;
            payloads.insert(
                (message_type.to_string(), *version),
                PayloadSchema { source, validator },
            );
        }
        Ok(Self {
            envelope,
            envelope_source,
            payloads,
        })
    }

    pub fn knows_type(&self, message_type: &str) -> bool {
        self.payloads.keys().any(|(t, _)| t == message_type)
    }

    /// Every (type, version) with its schema.
    pub fn schemas(&self) -> impl Iterator<Item = (&str, u32, &Value)> {
        self.payloads
            .iter()
            .map(|((t, v), s)| (t.as_str(), *v, &s.source))
    }

    pub fn envelope_schema(&self) -> &Value {
        &self.envelope_source
    }

    /// Every schema version of `message_type` this node knows, ascending;
    /// empty for an unknown type.
    pub fn versions(&self, message_type: &str) -> Vec<u32> {
        self.versions_of(message_type)
    }

    fn versions_of(&self, message_type: &str) -> Vec<u32> {
        self.payloads
            .keys()
            .filter(|(t, _)| t == message_type)
            .map(|(_, v)| *v)
            .collect()
    }

    /// Validates a whole message (envelope, then its payload) and returns the
    /// typed envelope. Every violation is reported, not just the first.
    pub fn validate(&self, message: &Value) -> Result<Envelope, MessageError> {
        self.check(message)?;
        Envelope::deserialize(message).map_err(|_| misfit())
    }

    /// [`SchemaRegistry::validate`], taking the message: its payload moves
    /// into the envelope instead of being copied (a deep copy of every
    /// payload was 4% of a receiving gateway's time).
    pub fn validate_owned(&self, mut message: Value) -> Result<Envelope, MessageError> {
        self.check(&message)?;
        let payload = message
            .get_mut("payload")
            .map(Value::take)
            .unwrap_or_default();
        let mut envelope = Envelope::deserialize(message).map_err(|_| misfit())?;
        envelope.payload = std::sync::Arc::new(payload);
        Ok(envelope)
    }

    /// Every violation of the envelope's and the payload's schemas.
    fn check(&self, message: &Value) -> Result<(), MessageError> {
        let mut found = violations(&self.envelope, message, "");
        let message_type = message.get("type").and_then(Value::as_str);
        let version = message.get("schema_version").and_then(Value::as_u64);
        if let (Some(t), Some(v)) = (message_type, version) {
            let known = self.versions_of(t);
            if known.is_empty() {
                if found.iter().all(|f| f.pointer != "/type") {
                    return Err(MessageError::UnknownType {
                        message_type: t.to_string(),
                        known: self
                            .payloads
                            .keys()
                            .map(|(t, _)| t.clone())
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                    });
                }
            } else if let Some(schema) = u32::try_from(v)
                .ok()
                .and_then(|v| self.payloads.get(&(t.to_string(), v)))
            {
                if let Some(payload) = message.get("payload") {
                    found.extend(violations(&schema.validator, payload, "/payload"));
                }
            } else if found.iter().all(|f| f.pointer != "/schema_version") {
                return Err(MessageError::UnsupportedVersion {
                    message_type: t.to_string(),
                    version: v,
                    supported: known,
                });
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(MessageError::Invalid(found))
        }
    }
}

/// What a field a later schema version added means in a message of an
/// earlier version, which lacks it: not known.
pub const UNKNOWN: &str = "unknown";

/// A top-level string field of `payload` that a later schema version added
/// (`recruitment_channel`, `return_channel`, `gate`), or [`UNKNOWN`] when
/// the message is of a version without it: statistics and views count a v1
/// message under "unknown" rather than leaving it out.
pub fn added_field<'a>(payload: &'a Value, field: &str) -> &'a str {
    payload
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or(UNKNOWN)
}

/// A message that passed the schemas but does not fit [`Envelope`].
fn misfit() -> MessageError {
    MessageError::Invalid(vec![Violation {
        pointer: String::new(),
        keyword: "type".into(),
        message: "the message does not fit the envelope".into(),
    }])
}

/// JSON pointers (into a payload) of every property a schema annotates with
/// `"x-personal": true`; array items appear as `*`. Local `$ref`s and
/// composition keywords are followed, so redaction and agreement rules are
/// driven by the schemas rather than by lists in code.
pub fn personal_pointers(schema: &Value) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    // The marker may sit beside a `$ref` or on its target.
    let marked = |n: &Value| n.get("x-personal") == Some(&Value::Bool(true));
    walk_schema(
        schema,
        schema,
        String::new(),
        0,
        &mut |node, target, path| {
            if (marked(node) || marked(target)) && !path.is_empty() {
                out.insert(path.to_string());
            }
        },
    );
    out.into_iter().collect()
}

/// JSON pointers (into a payload) of every property its parent object
/// requires, array items as `*`, following what [`personal_pointers`]
/// follows: where a field withheld for want of consent must stay, with a
/// placeholder, for the message to remain valid.
pub fn required_pointers(schema: &Value) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    walk_schema(schema, schema, String::new(), 0, &mut |_, target, path| {
        for name in target
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            out.insert(format!("{path}/{name}"));
        }
    });
    out.into_iter().collect()
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with("#/") => root.pointer(&r[1..]).unwrap_or(node),
        _ => node,
    }
}

/// Visits every subschema that describes a place in a payload, with the
/// place's pointer: `visit(node, its $ref target (or itself), pointer)`.
/// Properties, array items (`*`), composition and conditional branches are
/// followed; a cycle stops at depth 32.
fn walk_schema(
    root: &Value,
    node: &Value,
    path: String,
    depth: usize,
    visit: &mut dyn FnMut(&Value, &Value, &str),
) {
    if depth > 32 {
        return;
    }
    let target = resolve(root, node);
    visit(node, target, &path);
    let node = target;
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            walk_schema(root, sub, format!("{path}/{name}"), depth + 1, visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk_schema(root, items, format!("{path}/*"), depth + 1, visit);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for sub in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk_schema(root, sub, path.clone(), depth + 1, visit);
        }
    }
    for key in ["then", "else"] {
        if let Some(sub) = node.get(key) {
            walk_schema(root, sub, path.clone(), depth + 1, visit);
        }
    }
}

/// Whether `pointer` (with `*` for any array index) names something present in `doc`.
pub fn pointer_present(doc: &Value, pointer: &str) -> bool {
    fn go(doc: &Value, parts: &[&str]) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return !doc.is_null();
        };
        match (doc, *first) {
            (Value::Array(items), "*") => items.iter().any(|i| go(i, rest)),
            (Value::Array(items), idx) => idx
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .is_some_and(|i| go(i, rest)),
            (Value::Object(map), key) => map.get(key).is_some_and(|v| go(v, rest)),
            _ => false,
        }
    }
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    go(doc, &parts)
}

impl SchemaRegistry {
    /// Pointers `message_type`'s schemas require (any version).
    pub fn required_pointers(&self, message_type: &str) -> Vec<String> {
        self.payloads
            .iter()
            .filter(|((t, _), _)| t == message_type)
            .flat_map(|(_, s)| required_pointers(&s.source))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Personal-data pointers of every version of `message_type` (their
    /// union, like [`SchemaRegistry::required_pointers`]): a withheld list,
    /// a consent rule or a redaction written once holds for each version.
    pub fn personal_pointers(&self, message_type: &str) -> Vec<String> {
        self.payloads
            .iter()
            .filter(|((t, _), _)| t == message_type)
            .flat_map(|(_, s)| personal_pointers(&s.source))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_pointers_follow_refs_items_and_conditionals() {
        let schema = json!({
            "$defs": {"name": {"type": "string", "x-personal": true}, "date": {"type": "string"}},
            "properties": {
                "person": {"properties": {
                    "name": {"$ref": "#/$defs/name"},
                    "born": {"$ref": "#/$defs/date", "x-personal": true},
                    "sex": {"type": "string"}
                }},
                "docs": {"items": {"properties": {"number": {"x-personal": true}}}},
                "note": {"type": "string"}
            },
            "if": {"properties": {"a": {}}},
            "then": {"properties": {"note": {"x-personal": true}}}
        });
        assert_eq!(
            personal_pointers(&schema),
            ["/docs/*/number", "/note", "/person/born", "/person/name"]
        );
    }

    #[test]
    fn pointers_with_wildcards_find_values() {
        let doc = json!({"docs": [{"n": 1}, {"x": 2}], "a": {"b": null}});
        assert!(pointer_present(&doc, "/docs/*/x"));
        assert!(pointer_present(&doc, "/docs/0/n"));
        assert!(!pointer_present(&doc, "/docs/*/y"));
        assert!(!pointer_present(&doc, "/a/b"));
    }
}
