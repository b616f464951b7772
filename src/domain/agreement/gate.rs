//! Border gates: the pairs of checkpoints or airports of a corridor where
//! persons are handed over, as an agreement lists them (`[[gates]]`), and
//! the languages their names are given in.

use std::collections::BTreeMap;

/// The language (ISO 639-1) a known country's gate names must also be
/// given in, beside English.
pub fn language_of(country: &str) -> Option<&'static str> {
    Some(match country {
        "KH" => "km",
        "TH" => "th",
        "VN" => "vi",
        "MY" => "ms",
        "LA" => "lo",
        "MM" => "my",
        "CN" => "zh",
        _ => return None,
    })
}

/// The form of a gate code, as the v2 schemas write it (`gate`).
pub const GATE_CODE_PATTERN: &str = "^[A-Z0-9][A-Z0-9_]{1,31}$";

/// Whether `code` has the form of [`GATE_CODE_PATTERN`].
pub fn is_gate_code(code: &str) -> bool {
    let mut chars = code.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && (2..=32).contains(&code.len())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// How a border gate is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    Land,
    Air,
    Sea,
}

impl GateMode {
    pub const ALL: [GateMode; 3] = [Self::Land, Self::Air, Self::Sea];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Land => "land",
            Self::Air => "air",
            Self::Sea => "sea",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl std::fmt::Display for GateMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A border gate of a corridor (`[[gates]]` of its agreement): a pair of
/// checkpoints, or of airports, where persons are handed over. The v2
/// `repatriation.request` and `repatriation.handover` name one by its
/// `code`; a code the agreement does not list is refused (`unknown_gate`).
/// Place names are not personal data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gate {
    /// E.g. `POIPET`, `PNH_KUL` ([`GATE_CODE_PATTERN`]).
    pub code: String,
    pub mode: GateMode,
    /// The two checkpoints (or airports), in the order of the agreement's
    /// `parties`: the one in `parties[0]`'s country first, e.g. `["Poipet",
    /// "Aranyaprathet"]` under `parties = ["KH", "TH"]`.
    pub checkpoints: [String; 2],
    /// Language (ISO 639-1) → the gate's name in it: always `en`, and the
    /// language of each party ([`language_of`]), in its own script.
    pub names: BTreeMap<String, String>,
}

impl Gate {
    /// The gate's name in `language`, else in English.
    pub fn name(&self, language: &str) -> &str {
        self.names
            .get(language)
            .or_else(|| self.names.get("en"))
            .map_or(self.code.as_str(), String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{GOOD, parse};
    use super::*;

    const GATES: &str = r#"
[[gates]]
code = "POIPET"
mode = "land"
checkpoints = ["Poipet", "Aranyaprathet"]
names = { en = "Poipet–Aranyaprathet", km = "ប៉ោយប៉ែត–អារ៉ាញ", th = "ปอยเปต–อรัญประเทศ" }
[[gates]]
code = "PNH_BKK"
mode = "air"
checkpoints = ["Phnom Penh International Airport", "Suvarnabhumi Airport"]
names = { en = "Phnom Penh – Bangkok Suvarnabhumi", km = "ភ្នំពេញ–បាងកក", th = "พนมเปญ–สุวรรณภูมิ" }
"#;

    #[test]
    fn gates_load_and_are_found_by_code() {
        let a = parse(&format!("{GOOD}{GATES}")).unwrap();
        assert_eq!(
            a.gates()
                .iter()
                .map(|g| g.code.as_str())
                .collect::<Vec<_>>(),
            ["POIPET", "PNH_BKK"]
        );
        let poipet = a.gate("POIPET").unwrap();
        assert_eq!(poipet.mode, GateMode::Land);
        assert_eq!(poipet.checkpoints, ["Poipet", "Aranyaprathet"]);
        assert_eq!(poipet.name("th"), "ปอยเปต–อรัญประเทศ");
        assert_eq!(
            poipet.name("vi"),
            "Poipet–Aranyaprathet",
            "English otherwise"
        );
        assert_eq!(a.checkpoint_in(poipet, "TH"), Some("Aranyaprathet"));
        assert_eq!(a.checkpoint_in(poipet, "VN"), None);
        assert_eq!(a.gate("PNH_BKK").unwrap().mode, GateMode::Air);
        assert!(a.gate("BAVET").is_none());
        assert!(parse(GOOD).unwrap().gates().is_empty());
    }

    #[test]
    fn bad_gates_are_refused_naming_file_and_key() {
        let cases = [
            (
                "code = \"POIPET\"",
                "code = \"Poipet\"",
                "gates[0].code",
                "not a gate code",
            ),
            (
                "code = \"POIPET\"",
                "code = \"P\"",
                "gates[0].code",
                "not a gate code",
            ),
            (
                "code = \"PNH_BKK\"",
                "code = \"POIPET\"",
                "gates[1].code",
                "already the code of gates[0]",
            ),
            (
                "mode = \"land\"",
                "mode = \"river\"",
                "gates[0].mode",
                "`river`",
            ),
            (
                "checkpoints = [\"Poipet\", \"Aranyaprathet\"]",
                "checkpoints = [\"Poipet\"]",
                "gates[0].checkpoints",
                "exactly two",
            ),
            (
                "checkpoints = [\"Poipet\", \"Aranyaprathet\"]",
                "checkpoints = [\"Poipet\", \"Aranyaprathet\", \"Klong Luek\"]",
                "gates[0].checkpoints",
                "exactly two",
            ),
            (
                "checkpoints = [\"Poipet\", \"Aranyaprathet\"]",
                "checkpoints = [\"Poipet\", \" \"]",
                "gates[0].checkpoints[1]",
                "empty",
            ),
            (", th = \"ปอยเปต–อรัญประเทศ\"", "", "gates[0].names", "`th`"),
            (
                "en = \"Poipet–Aranyaprathet\", ",
                "",
                "gates[0].names",
                "`en`",
            ),
        ];
        for (from, to, key, says) in cases {
            let text = format!("{GOOD}{GATES}").replacen(from, to, 1);
            assert_ne!(text, format!("{GOOD}{GATES}"), "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("kh-th.toml")
                    && err.contains(&format!("`{key}`"))
                    && err.contains(says),
                "{to}: {err}"
            );
        }
        assert!(is_gate_code("PNH_KUL") && is_gate_code("K9"));
        assert!(!is_gate_code("_POIPET") && !is_gate_code(&"A".repeat(33)));
    }
}
