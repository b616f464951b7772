//! What every printed page shares: HTML escaping of every value, labels
//! in one or several languages (from the translation files, never from
//! code), the A4 print style, and the page's content security policy: no
//! script, nothing loaded, only its own inline style (by hash).

use std::fmt::Write;
use std::sync::OnceLock;

use base64::Engine;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::i18n::{Lang, catalogue};

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The label `key` in each of `langs`, one line each, English first.
pub fn label(langs: &[Lang], key: &str) -> String {
    label_with(langs, key, &[])
}

/// [`label`] with `{name}` values filled in (then escaped with the label).
/// Each value may differ by language (a country's name).
pub fn label_with(langs: &[Lang], key: &str, values: &[(&str, &dyn Fn(Lang) -> String)]) -> String {
    let mut out = String::from("<span class=\"lbl\">");
    for lang in langs {
        let owned: Vec<(&str, String)> = values.iter().map(|(n, v)| (*n, v(*lang))).collect();
        let pairs: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let _ = write!(
            out,
            "<span lang=\"{}\">{}</span>",
            lang.code(),
            escape(&catalogue(*lang).fill(key, &pairs))
        );
    }
    out.push_str("</span>");
    out
}

/// An optional value, or the "not recorded" label.
pub fn value_or(langs: &[Lang], value: Option<&str>) -> String {
    match value {
        Some(v) => escape(v),
        None => format!(
            "<span class=\"none\">{}</span>",
            label(langs, "not_recorded")
        ),
    }
}

/// `2027-01-12T10:30:00+07:00` as `2027-01-12 10:30 (UTC+07:00)`; a time
/// that does not parse is shown as given.
pub fn local_time(rfc3339: &str) -> String {
    let Ok(t) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_string();
    };
    let (h, m, _) = t.offset().as_hms();
    format!(
        "{} {:02}:{:02} (UTC{}{:02}:{:02})",
        t.date(),
        t.hour(),
        t.minute(),
        if h < 0 || m < 0 { '-' } else { '+' },
        h.unsigned_abs(),
        m.unsigned_abs()
    )
}

/// The style of every printed page: A4, the Noto fonts of the four
/// scripts, each person's block kept whole.
pub const STYLE: &str = r#"
@page { size: A4; margin: 16mm 14mm; }
* { box-sizing: border-box; }
html { font-family: "Noto Sans", "Noto Sans Khmer", "Noto Sans Thai", "DejaVu Sans", sans-serif; font-size: 10.5pt; color: #111; }
body { margin: 0 auto; max-width: 190mm; padding: 8mm 0; }
[lang="km"] { font-family: "Noto Sans Khmer", "Noto Serif Khmer", "Noto Sans", sans-serif; }
[lang="th"] { font-family: "Noto Sans Thai", "Noto Serif Thai", "Noto Sans", sans-serif; }
h1, h2, h3 { margin: 0 0 2mm; font-weight: 700; }
h1 { font-size: 15pt; } h2 { font-size: 12pt; margin-top: 5mm; } h3 { font-size: 11pt; }
h2, h3 { break-after: avoid; page-break-after: avoid; }
.lbl > span { display: block; }
.lbl > span + span { font-size: 0.88em; color: #333; }
h1 .lbl > span + span { font-size: 0.8em; }
table { width: 100%; border-collapse: collapse; margin: 2mm 0; }
th, td { border: 0.3mm solid #555; padding: 1.5mm 2mm; vertical-align: top; text-align: left; }
th { width: 38%; background: #f1f1f1; font-weight: 600; }
.sides { display: flex; gap: 4mm; }
.sides > div { flex: 1; }
.person { break-inside: avoid; page-break-inside: avoid; margin-top: 3mm; }
.long .person + .person { break-before: page; page-break-before: always; }
.name { font-size: 12pt; font-weight: 600; }
.none { color: #666; font-style: italic; }
.signatures { display: flex; gap: 6mm; break-inside: avoid; page-break-inside: avoid; margin-top: 6mm; }
.signatures > div { flex: 1; border: 0.3mm solid #555; padding: 2mm 3mm; }
.line { border-bottom: 0.3mm solid #111; height: 14mm; margin: 1mm 0 1.5mm; }
.short { height: 7mm; }
footer { margin-top: 6mm; font-size: 8pt; color: #444; }
ol.events { padding-left: 0; list-style: none; }
ol.events li { margin: 0 0 2.5mm; padding-left: 28mm; text-indent: -28mm; }
ol.events time { display: inline-block; width: 27mm; text-indent: 0; font-weight: 600; }
.sheet { font-size: 12pt; line-height: 1.45; }
.support { border: 0.4mm solid #111; padding: 3mm; margin-top: 5mm; }
"#;

/// The page's policy: nothing but its own style (by hash); no script, no
/// request, no frame, no form.
pub fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; font-src 'none'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// A whole page: `title` (text), the document's language, and its body.
pub fn document(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        lang.code(),
        escape(policy()),
        escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_times_read_as_local() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(
            local_time("2027-01-12T10:30:00+07:00"),
            "2027-01-12 10:30 (UTC+07:00)"
        );
        assert_eq!(
            local_time("2027-01-12T03:30:00Z"),
            "2027-01-12 03:30 (UTC+00:00)"
        );
        assert_eq!(local_time("garbage <"), "garbage <");
        let l = label(&[Lang::En, Lang::Km], "handover_place");
        assert!(
            l.contains("<span lang=\"en\">Place of handover</span>"),
            "{l}"
        );
        assert!(l.contains("<span lang=\"km\">ទីកន្លែងប្រគល់</span>"), "{l}");
        assert!(policy().contains("style-src 'sha256-"));
        assert!(
            !policy().contains("script-src"),
            "default-src 'none' forbids scripts"
        );
    }
}
