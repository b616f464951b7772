//! The handover record as a printable page, in English and the languages
//! of the case's two parties: both sides, the place and time, each person
//! (name in their own script and in Latin script, sex, age band), the
//! documents and belongings, the countersignature, and signature lines for
//! the officer who handed over and the one who received.

use std::fmt::Write;

use super::page::{document, escape, label, label_with, local_time, value_or};
use crate::domain::handover::{HandedOverPerson, HandoverRecord, Officer};
use crate::domain::i18n::{Lang, catalogue};

/// More persons than this, and each starts a page of their own.
const PERSONS_PER_PAGE: usize = 3;

/// The record as HTML, labelled in `langs` (English first); `gate`: the
/// border gate's name in each of them, from the corridor's agreement.
pub fn render(
    r: &HandoverRecord,
    langs: &[Lang],
    gate: Option<&[(Lang, String)]>,
    node: &str,
) -> String {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<header><h1>{}</h1>{}</header>",
        label(langs, "handover_title"),
        label(langs, "handover_subtitle")
    );
    let _ = writeln!(
        b,
        "<table class=\"facts\">\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr>{}</table>",
        label(langs, "case_reference"),
        escape(&r.case_ref),
        label(langs, "handover_time"),
        escape(&local_time(&r.handed_over_at)),
        label(langs, "handover_place"),
        escape(&r.place),
        gate_row(langs, r.gate.as_deref(), gate),
    );
    let _ = writeln!(
        b,
        "<section class=\"sides\">{}{}</section>",
        side(langs, "handing_over_side", &r.host, &r.handed_over_by),
        side(langs, "receiving_side", &r.origin, &r.received_by),
    );
    let long = if r.persons.len() > PERSONS_PER_PAGE {
        " long"
    } else {
        ""
    };
    let _ = writeln!(
        b,
        "<section class=\"persons{long}\"><h2>{}</h2>",
        label(langs, "persons_handed_over")
    );
    let total = r.persons.len().to_string();
    for (i, p) in r.persons.iter().enumerate() {
        b.push_str(&person(langs, p, &(i + 1).to_string(), &total, &r.origin));
    }
    b.push_str("</section>\n");
    let _ = writeln!(
        b,
        "<section class=\"items\"><table>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr></table></section>",
        label(langs, "documents"),
        list(langs, &r.documents),
        label(langs, "belongings"),
        list(langs, &r.belongings),
        label(langs, "remarks"),
        value_or(langs, r.remarks.as_deref()),
    );
    let countersigned = match &r.countersignature {
        Some(c) => {
            let date = c.created_at.as_deref().map(local_time).unwrap_or_default();
            let from = c.from.clone();
            let mut s = label_with(
                langs,
                "countersigned_by",
                &[
                    ("country", &|l: Lang| catalogue(l).country(&from)),
                    ("date", &|_| date.clone()),
                ],
            );
            if let Some(remarks) = &c.remarks {
                let _ = write!(
                    s,
                    "<p><b>{}</b> {}</p>",
                    label(langs, "remarks"),
                    escape(remarks)
                );
            }
            s
        }
        None => label(langs, "not_countersigned"),
    };
    let _ = writeln!(
        b,
        "<section class=\"countersignature\"><h2>{}</h2>{countersigned}</section>",
        label(langs, "countersignature")
    );
    let _ = writeln!(
        b,
        "<h2>{}</h2><section class=\"signatures\">{}{}</section>",
        label(langs, "signatures"),
        signature(langs, "signed_handed_over_by", &r.host, &r.handed_over_by),
        signature(langs, "signed_received_by", &r.origin, &r.received_by),
    );
    let (node, message) = (node.to_string(), r.message_id.clone());
    let _ = write!(
        b,
        "<footer>{}</footer>",
        label_with(
            langs,
            "printed_from",
            &[
                ("country", &|l: Lang| catalogue(l).country(&node)),
                ("message", &|_| message.clone()),
            ],
        )
    );
    let title = format!(
        "{} {}",
        catalogue(Lang::En).get("handover_title"),
        r.case_ref
    );
    document(Lang::En, &title, &b)
}

/// The border gate's row: its names (each in its language) and code.
fn gate_row(langs: &[Lang], code: Option<&str>, names: Option<&[(Lang, String)]>) -> String {
    let Some(code) = code else {
        return String::new();
    };
    let names: String = names
        .unwrap_or_default()
        .iter()
        .map(|(l, name)| format!("<span lang=\"{}\">{}</span>", l.code(), escape(name)))
        .collect();
    format!(
        "<tr><th>{}</th><td><span class=\"lbl\">{names}<span>{}</span></span></td></tr>",
        label(langs, "handover_gate"),
        escape(code)
    )
}

/// A country's name in each language.
fn country(langs: &[Lang], cc: &str) -> String {
    let names: Vec<String> = langs
        .iter()
        .map(|l| {
            format!(
                "<span lang=\"{}\">{}</span>",
                l.code(),
                escape(&catalogue(*l).country(cc))
            )
        })
        .collect();
    format!("<span class=\"lbl\">{}</span>", names.join(""))
}

fn side(langs: &[Lang], key: &str, cc: &str, officer: &Officer) -> String {
    format!(
        "<div><h3>{}</h3><table>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr></table></div>",
        label(langs, key),
        label(langs, "country"),
        country(langs, cc),
        label(langs, "agency"),
        value_or(langs, officer.organisation.as_deref()),
        label(langs, "officer"),
        value_or(langs, officer.name.as_deref()),
        label(langs, "position"),
        value_or(langs, officer.position.as_deref()),
    )
}

fn person(langs: &[Lang], p: &HandedOverPerson, n: &str, total: &str, origin: &str) -> String {
    // The person's own script is the origin country's language.
    let own = Lang::of_country(origin).unwrap_or(Lang::En);
    let native = match &p.name_native {
        Some(name) => format!(
            "<span class=\"name\" lang=\"{}\">{}</span>",
            own.code(),
            escape(name)
        ),
        None => value_or(langs, None),
    };
    let latin = match &p.name_latin {
        Some(name) => format!("<span class=\"name\">{}</span>", escape(name)),
        None => value_or(langs, None),
    };
    let (n, total) = (n.to_string(), total.to_string());
    format!(
        "<div class=\"person\"><h3>{}</h3><table>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{native}</td></tr>\
         <tr><th>{}</th><td>{latin}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr></table></div>\n",
        label_with(
            langs,
            "person_number",
            &[("n", &|_| n.clone()), ("total", &|_| total.clone())]
        ),
        label(langs, "person_reference"),
        escape(&p.person_ref),
        label(langs, "name_native"),
        label(langs, "name_latin"),
        label(langs, "sex"),
        label(langs, p.sex.key()),
        label(langs, "age"),
        label(langs, p.age.key()),
    )
}

fn list(langs: &[Lang], items: &[String]) -> String {
    if items.is_empty() {
        return format!(
            "<span class=\"none\">{}</span>",
            label(langs, "none_recorded")
        );
    }
    let items: Vec<String> = items
        .iter()
        .map(|i| format!("<li>{}</li>", escape(i)))
        .collect();
    format!("<ul>{}</ul>", items.join(""))
}

fn signature(langs: &[Lang], key: &str, cc: &str, officer: &Officer) -> String {
    let named = [officer.name.as_deref(), officer.position.as_deref()]
        .into_iter()
        .flatten()
        .map(escape)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<div><h3>{}</h3>{}\
         <p>{}</p><div class=\"line short\">{named}</div>\
         <p>{}</p><div class=\"line\"></div>\
         <p>{}</p><div class=\"line short\"></div></div>",
        label(langs, key),
        country(langs, cc),
        label(langs, "name_and_position"),
        label(langs, "signature"),
        label(langs, "date"),
    )
}
