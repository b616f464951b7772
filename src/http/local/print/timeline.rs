//! The person's own timeline as a one-page sheet in their language: what
//! has happened with its dates, what comes next, the answers awaited and
//! by when, and the support they may ask for. Only their own name.

use std::fmt::Write;

use super::page::{document, escape};
use crate::domain::i18n::{Lang, catalogue};
use crate::domain::person_timeline::{PersonTimeline, next_key};

/// The sheet as HTML in `lang`.
pub fn render(t: &PersonTimeline, lang: Lang) -> String {
    let cat = catalogue(lang);
    let (host, origin) = (cat.country(&t.host), cat.country(&t.origin));
    let fill = |key: &str, values: &[(&str, &str)]| {
        let mut all = vec![("host", host.as_str()), ("origin", origin.as_str())];
        all.extend_from_slice(values);
        escape(&cat.fill(key, &all))
    };
    let mut b = String::from("<div class=\"sheet\">");
    let _ = write!(
        b,
        "<h1>{}</h1><p>{}</p>",
        escape(cat.get("timeline_title")),
        fill("timeline_intro", &[])
    );
    let names: Vec<String> = [t.name_native.as_deref(), t.name_latin.as_deref()]
        .into_iter()
        .flatten()
        .map(escape)
        .collect();
    let _ = write!(
        b,
        "<table><tr><th>{}</th><td class=\"name\">{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr></table>",
        escape(cat.get("timeline_name")),
        if names.is_empty() {
            escape(cat.get("not_recorded"))
        } else {
            names.join("<br>")
        },
        escape(cat.get("case_reference")),
        escape(&t.case_ref),
    );
    let _ = write!(
        b,
        "<h2>{}</h2><ol class=\"events\">",
        escape(cat.get("timeline_happened"))
    );
    if t.happened.is_empty() {
        let _ = write!(b, "<li>{}</li>", escape(cat.get("timeline_nothing_yet")));
    }
    for h in &t.happened {
        let sentence = fill(
            h.step.key(),
            &[
                ("date", h.named_date.as_deref().unwrap_or("")),
                ("place", h.place.as_deref().unwrap_or("")),
            ],
        );
        let _ = write!(
            b,
            "<li><time>{}</time>{sentence}</li>",
            escape(h.date.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</ol>");
    let _ = write!(
        b,
        "<h2>{}</h2><p>{}</p>",
        escape(cat.get("timeline_next")),
        fill(next_key(t.state), &[])
    );
    if !t.awaited.is_empty() {
        b.push_str("<ul class=\"awaited\">");
        for a in &t.awaited {
            let _ = write!(
                b,
                "<li><b>{}</b>: {}</li>",
                fill("timeline_expected", &[("date", &a.due)]),
                escape(cat.get(a.key())),
            );
        }
        b.push_str("</ul>");
    }
    let _ = write!(
        b,
        "<p class=\"support\">{}</p></div>",
        escape(cat.get("timeline_support"))
    );
    document(lang, cat.get("timeline_title"), &b)
}
