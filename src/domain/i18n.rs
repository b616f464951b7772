//! The labels of the printed documents (the handover record, the person's
//! own timeline) in each language Homeward prints: English and the
//! languages of the four parties. Labels live in `config/i18n/<lang>.toml`,
//! one flat file per language with exactly English's keys (a test checks
//! it), embedded in the binary; the code holds keys, never words. A label
//! may mark where a value goes with `{name}`; values are filled in by
//! [`Catalogue::fill`] and the caller escapes the result for its medium.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// A language the documents are printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lang {
    En,
    Km,
    Th,
    Vi,
    Ms,
}

impl Lang {
    /// Every language, English first.
    pub const ALL: [Lang; 5] = [Lang::En, Lang::Km, Lang::Th, Lang::Vi, Lang::Ms];

    /// The BCP 47 tag, as in `?lang=` and the HTML `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Km => "km",
            Lang::Th => "th",
            Lang::Vi => "vi",
            Lang::Ms => "ms",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The language a party's officers and nationals read: KH Khmer, TH
    /// Thai, VN Vietnamese, MY Malay.
    pub fn of_country(cc: &str) -> Option<Lang> {
        super::agreement::language_of(cc).and_then(Lang::parse)
    }

    /// The allowed codes, for refusals: `en, km, th, vi, ms`.
    pub fn allowed() -> String {
        Lang::ALL.map(Lang::code).join(", ")
    }

    fn source(self) -> &'static str {
        match self {
            Lang::En => include_str!("../../config/i18n/en.toml"),
            Lang::Km => include_str!("../../config/i18n/km.toml"),
            Lang::Th => include_str!("../../config/i18n/th.toml"),
            Lang::Vi => include_str!("../../config/i18n/vi.toml"),
            Lang::Ms => include_str!("../../config/i18n/ms.toml"),
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// English plus the languages of the case's two parties, each once.
pub fn languages_of(parties: &[&str]) -> Vec<Lang> {
    let mut langs = vec![Lang::En];
    for l in parties.iter().filter_map(|cc| Lang::of_country(cc)) {
        if !langs.contains(&l) {
            langs.push(l);
        }
    }
    langs
}

/// Why a translation file is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("config/i18n/{lang}.toml does not parse as a flat table of strings: {message}")]
    Parse { lang: String, message: String },
    #[error("config/i18n/{lang}.toml lacks keys of en.toml: {}", .keys.join(", "))]
    Missing { lang: String, keys: Vec<String> },
    #[error("config/i18n/{lang}.toml has keys en.toml does not: {}", .keys.join(", "))]
    Extra { lang: String, keys: Vec<String> },
    #[error("config/i18n/{lang}.toml: `{key}` marks {found:?} where en.toml marks {expected:?}")]
    Placeholders {
        lang: String,
        key: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
}

/// The labels of one language.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub lang: Lang,
    labels: BTreeMap<String, String>,
}

/// Parses a translation file: a flat TOML table of string values.
pub fn parse(lang: &str, text: &str) -> Result<BTreeMap<String, String>, CatalogueError> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(text))
        .extract::<BTreeMap<String, String>>()
        .map_err(|e| CatalogueError::Parse {
            lang: lang.to_string(),
            message: e.to_string(),
        })
}

/// The `{name}` marks of a label, sorted.
fn placeholders(label: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut rest = label;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                found.insert(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    found.into_iter().collect()
}

/// Whether `other` (language `lang`) has exactly the keys of `reference`
/// (English), each with the same `{name}` marks.
pub fn check_complete(
    reference: &BTreeMap<String, String>,
    lang: &str,
    other: &BTreeMap<String, String>,
) -> Result<(), CatalogueError> {
    let missing: Vec<String> = reference
        .keys()
        .filter(|k| !other.contains_key(*k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(CatalogueError::Missing {
            lang: lang.to_string(),
            keys: missing,
        });
    }
    let extra: Vec<String> = other
        .keys()
        .filter(|k| !reference.contains_key(*k))
        .cloned()
        .collect();
    if !extra.is_empty() {
        return Err(CatalogueError::Extra {
            lang: lang.to_string(),
            keys: extra,
        });
    }
    for (key, label) in reference {
        let (expected, found) = (placeholders(label), placeholders(&other[key]));
        if expected != found {
            return Err(CatalogueError::Placeholders {
                lang: lang.to_string(),
                key: key.clone(),
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// Every shipped translation file, parsed and checked against English.
pub fn load_all() -> Result<Vec<Catalogue>, CatalogueError> {
    let en = parse("en", Lang::En.source())?;
    let mut all = Vec::new();
    for lang in Lang::ALL {
        let labels = parse(lang.code(), lang.source())?;
        check_complete(&en, lang.code(), &labels)?;
        all.push(Catalogue { lang, labels });
    }
    Ok(all)
}

/// The catalogue of `lang`. The files are embedded and checked by a test;
/// should one still fail to load, its labels fall back to English and
/// then to the key itself (never a panic while printing).
pub fn catalogue(lang: Lang) -> &'static Catalogue {
    static ALL: OnceLock<Vec<Catalogue>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        load_all().unwrap_or_else(|e| {
            tracing::error!(error = %e, "translation files do not load; printing keys");
            Lang::ALL
                .into_iter()
                .map(|lang| Catalogue {
                    lang,
                    labels: parse(lang.code(), lang.source()).unwrap_or_default(),
                })
                .collect()
        })
    });
    &all[Lang::ALL.iter().position(|l| *l == lang).unwrap_or(0)]
}

impl Catalogue {
    /// The label `key`.
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.labels
            .get(key)
            .map(String::as_str)
            .or_else(|| {
                (self.lang != Lang::En)
                    .then(|| catalogue(Lang::En).labels.get(key).map(String::as_str))
                    .flatten()
            })
            .unwrap_or(key)
    }

    /// The label `key` with each `{name}` replaced by its value.
    pub fn fill(&self, key: &str, values: &[(&str, &str)]) -> String {
        values
            .iter()
            .fold(self.get(key).to_string(), |label, (name, value)| {
                label.replace(&format!("{{{name}}}"), value)
            })
    }

    /// A country's name in this language (its code if not one of the four).
    pub fn country(&self, cc: &str) -> String {
        let key = format!("country_{}", cc.to_ascii_lowercase());
        match self.labels.get(&key) {
            Some(name) => name.clone(),
            None => cc.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_file_has_exactly_the_english_keys() {
        let all = load_all().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.len(), Lang::ALL.len());
        let en = parse("en", Lang::En.source()).unwrap();
        assert!(en.len() > 50, "only {} labels", en.len());
        for c in &all {
            assert_eq!(c.labels.len(), en.len(), "{}", c.lang);
            // Translated, not copied: most labels differ from English.
            if c.lang != Lang::En {
                let same = en.iter().filter(|(k, v)| c.labels[*k] == **v).count();
                assert!(
                    same < en.len() / 4,
                    "{}: {same} labels as in English",
                    c.lang
                );
            }
        }
    }

    #[test]
    fn the_checker_fails_on_a_file_missing_a_key() {
        let en = parse("en", Lang::En.source()).unwrap();
        let mut text = Lang::Km.source().to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with("handover_place = "))
            .unwrap()
            .to_string();
        text = text.replace(&format!("{line}\n"), "");
        let km = parse("km", &text).unwrap();
        let err = check_complete(&en, "km", &km).unwrap_err();
        assert_eq!(
            err,
            CatalogueError::Missing {
                lang: "km".into(),
                keys: vec!["handover_place".into()]
            }
        );
        assert!(err.to_string().contains("handover_place"), "{err}");
    }

    #[test]
    fn the_checker_fails_on_an_extra_key_and_a_lost_placeholder() {
        let en = parse("en", Lang::En.source()).unwrap();
        let mut th = parse("th", Lang::Th.source()).unwrap();
        th.insert("not_in_english".into(), "x".into());
        assert!(matches!(
            check_complete(&en, "th", &th),
            Err(CatalogueError::Extra { .. })
        ));
        let mut th = parse("th", Lang::Th.source()).unwrap();
        th.insert("event_return_agreed".into(), "ตกลงแล้ว".into());
        let err = check_complete(&en, "th", &th).unwrap_err();
        assert!(
            matches!(&err, CatalogueError::Placeholders { key, .. } if key == "event_return_agreed"),
            "{err}"
        );
        assert!(parse("vi", "a = 1").is_err(), "numbers are not labels");
        assert!(parse("vi", "[t]\na = \"x\"").is_err(), "flat keys only");
    }

    #[test]
    fn labels_fill_in_values_and_countries_have_names() {
        let km = catalogue(Lang::Km);
        assert_eq!(km.country("TH"), "ថៃ");
        assert_eq!(km.country("ZZ"), "ZZ");
        let en = catalogue(Lang::En);
        assert_eq!(
            en.fill("event_return_agreed", &[("date", "2027-01-12")]),
            "Your return home was agreed for 2027-01-12."
        );
        assert_eq!(en.get("no_such_key"), "no_such_key");
        assert_eq!(
            languages_of(&["TH", "KH"]),
            vec![Lang::En, Lang::Th, Lang::Km]
        );
        assert_eq!(languages_of(&["ZZ", "MY"]), vec![Lang::En, Lang::Ms]);
        assert_eq!(Lang::allowed(), "en, km, th, vi, ms");
        assert_eq!(Lang::parse("vi"), Some(Lang::Vi));
        assert_eq!(Lang::parse(""), None);
        assert_eq!(Lang::of_country("VN"), Some(Lang::Vi));
        assert_eq!(Lang::of_country("LA"), None, "no Lao labels yet");
    }
}
