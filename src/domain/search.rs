//! Finding a case by what a caller knows of it: its reference, the
//! receiver's own case number, or an identity document's number. Document
//! numbers and case numbers are looked up through keyed hashes of the
//! terms below (the key is the node's; `store::seal::Sealer::search_digest`),
//! so this module only says which terms a message yields and how a query
//! names one.

use serde::Deserialize;
use serde_json::Value;

/// The kinds of identity document a search may name.
pub const DOCUMENT_KINDS: &[&str] = &["passport", "national_id", "travel_document"];

/// What a search looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchQuery {
    CaseRef(String),
    ReceiverCaseNumber(String),
    Document { kind: String, number: String },
}

/// Why a search body is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// JSON pointer into the body.
    pub pointer: String,
    pub message: String,
}

impl QueryError {
    fn at(pointer: &str, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    case_ref: Option<String>,
    #[serde(default)]
    receiver_case_number: Option<String>,
    #[serde(default)]
    document: Option<DocumentBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentBody {
    #[serde(rename = "type")]
    kind: String,
    number: String,
}

/// The longest term a search accepts (document numbers are at most 64 in
/// the schemas; case numbers are the receiver's own, kept short).
const MAX_TERM: usize = 128;

impl SearchQuery {
    /// Reads the query from a search body (`limit` and `after` are the
    /// page's, not the query's, and are taken out before).
    pub fn parse(body: &Value) -> Result<Self, QueryError> {
        let body: Body = serde_json::from_value(body.clone())
            .map_err(|e| QueryError::at("", format!("not a search: {e}")))?;
        let term = |pointer: &str, text: String| {
            let trimmed = text.trim().to_string();
            if trimmed.is_empty() || trimmed.chars().count() > MAX_TERM {
                return Err(QueryError::at(
                    pointer,
                    format!("must be 1 to {MAX_TERM} characters"),
                ));
            }
            Ok(trimmed)
        };
        match (body.case_ref, body.receiver_case_number, body.document) {
            (Some(c), None, None) => Ok(Self::CaseRef(term("/case_ref", c)?)),
            (None, Some(n), None) => {
                Ok(Self::ReceiverCaseNumber(term("/receiver_case_number", n)?))
            }
            (None, None, Some(d)) => {
                if !DOCUMENT_KINDS.contains(&d.kind.as_str()) {
                    return Err(QueryError::at(
                        "/document/type",
                        format!("must be one of {DOCUMENT_KINDS:?}"),
                    ));
                }
                Ok(Self::Document {
                    number: term("/document/number", d.number)?,
                    kind: d.kind,
                })
            }
            _ => Err(QueryError::at(
                "",
                "give exactly one of case_ref, receiver_case_number or document",
            )),
        }
    }

    /// The term to hash, or `None` for a case reference (looked up as is:
    /// it names no person).
    pub fn term(&self) -> Option<String> {
        match self {
            Self::CaseRef(_) => None,
            Self::ReceiverCaseNumber(n) => Some(case_number_term(n)),
            Self::Document { kind, number } => Some(document_term(kind, number)),
        }
    }
}

fn case_number_term(number: &str) -> String {
    format!("receiver_case_number:{}", number.trim())
}

/// Numbers as printed vary in spacing, dashes and case; the term does not.
fn document_term(kind: &str, number: &str) -> String {
    let number: String = number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect();
    format!("document:{kind}:{number}")
}

/// The search terms a message's payload yields: the receiver's case
/// number of an acknowledgement, and every identity document of a kind a
/// search may name, wherever the payload lists one (an object with a
/// `type` among [`DOCUMENT_KINDS`] and a `number`).
pub fn terms_of(message_type: &str, payload: &Value) -> Vec<String> {
    let mut terms = Vec::new();
    if message_type == "referral.acknowledge"
        && let Some(n) = payload["receiver_case_number"].as_str()
        && !n.trim().is_empty()
    {
        terms.push(case_number_term(n));
    }
    documents(payload, &mut terms);
    terms.sort();
    terms.dedup();
    terms
}

fn documents(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let (Some(Value::String(kind)), Some(Value::String(number))) =
                (map.get("type"), map.get("number"))
                && DOCUMENT_KINDS.contains(&kind.as_str())
                && !number.trim().is_empty()
            {
                out.push(document_term(kind, number));
            }
            map.values().for_each(|v| documents(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| documents(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_form_parses_and_anything_else_is_refused_with_its_pointer() {
        assert_eq!(
            SearchQuery::parse(&json!({"case_ref": "TH-KH-2026-000001"})).unwrap(),
            SearchQuery::CaseRef("TH-KH-2026-000001".into())
        );
        let q = SearchQuery::parse(&json!({"document": {"type": "passport", "number": "n 01-23"}}))
            .unwrap();
        assert_eq!(q.term().unwrap(), "document:passport:N0123");
        let q = SearchQuery::parse(&json!({"receiver_case_number": " KH-77 "})).unwrap();
        assert_eq!(q.term().unwrap(), "receiver_case_number:KH-77");
        for (body, pointer) in [
            (json!({}), ""),
            (json!({"case_ref": "a", "receiver_case_number": "b"}), ""),
            (json!({"nope": 1}), ""),
            (json!([]), ""),
            (json!({"case_ref": ""}), "/case_ref"),
            (json!({"case_ref": "x".repeat(129)}), "/case_ref"),
            (
                json!({"document": {"type": "birth_certificate", "number": "1"}}),
                "/document/type",
            ),
            (
                json!({"document": {"type": "passport", "number": " "}}),
                "/document/number",
            ),
            (json!({"document": {"type": "passport"}}), ""),
        ] {
            let e = SearchQuery::parse(&body).unwrap_err();
            assert_eq!(e.pointer, pointer, "{body}: {e}");
        }
    }

    #[test]
    fn a_payload_yields_its_documents_and_case_number_wherever_they_are() {
        let payload = json!({
            "receiver_case_number": "KH-77",
            "person": {"identity_documents": [
                {"type": "passport", "number": "N 0123"},
                {"type": "birth_certificate", "number": "B-1"},
            ]},
            "persons": [{"travel_document": {"type": "travel_document", "number": "T-9"}}],
        });
        assert_eq!(
            terms_of("referral.acknowledge", &payload),
            [
                "document:passport:N0123",
                "document:travel_document:T9",
                "receiver_case_number:KH-77"
            ]
        );
        // A case number counts only where it is the receiver's.
        assert_eq!(terms_of("referral.notify", &payload).len(), 2);
    }
}
