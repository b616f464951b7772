//! The annual reports' tables, counted from de-identified facts
//! ([`super::facts`]): what is counted (referrals, tracings, returnees,
//! reintegrations), over which period, grouped by which categories, and
//! with small cells suppressed so no table, alone or beside a coarser one,
//! narrows a count down to fewer than `k` people.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

use super::facts::{Fact, UNKNOWN};
use super::suppression::suppress;

/// What a table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counted {
    /// Cases referred (`referral.notify`), at the referral.
    Referrals,
    /// Cases with a family-tracing request, at the first request.
    Tracings,
    /// Persons handed over (`repatriation.handover`, record `handover`), at
    /// the handover: the returnees of the annual reports.
    Returnees,
    /// Cases with a reintegration report, at the latest report in the
    /// period, with its placement and status.
    Reintegrations,
}

impl Counted {
    pub const ALL: &[Counted] = &[
        Counted::Referrals,
        Counted::Tracings,
        Counted::Returnees,
        Counted::Reintegrations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referrals => "referrals",
            Self::Tracings => "tracings",
            Self::Returnees => "returnees",
            Self::Reintegrations => "reintegrations",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

/// The categories a table may be grouped by.
pub const GROUP_KEYS: &[&str] = &[
    "corridor",
    "origin",
    "year",
    "month",
    "sex",
    "age_band",
    "minor",
    "sector",
    "recruitment_channel",
    "return_channel",
    "gate",
    "outcome",
    "reintegration_status",
];

/// Default smallest count shown as itself.
pub const DEFAULT_K: u64 = 5;

/// Longest period one query may cover.
const MAX_YEARS: i32 = 10;

/// A statistics query, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub counted: Counted,
    /// First and last day counted, inclusive (UTC).
    pub from: Date,
    pub to: Date,
    pub group_by: Vec<&'static str>,
    pub k: u64,
}

/// Why a query is not one: the parameter and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct QueryError {
    pub parameter: &'static str,
    pub message: String,
}

fn bad(parameter: &'static str, message: impl Into<String>) -> QueryError {
    QueryError {
        parameter,
        message: message.into(),
    }
}

/// A day, or the first (`end = false`) or last day of a month or year.
fn parse_day(parameter: &'static str, s: &str, end: bool) -> Result<Date, QueryError> {
    let wrong = || {
        bad(
            parameter,
            format!("`{s}` is not a date: use YYYY-MM-DD, YYYY-MM or YYYY"),
        )
    };
    let parts: Vec<&str> = s.split('-').collect();
    let number = |p: &str, len: usize| -> Result<i32, QueryError> {
        if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().map_err(|_| wrong())
        } else {
            Err(wrong())
        }
    };
    let year = number(parts.first().copied().unwrap_or(""), 4)?;
    if !(1970..=9998).contains(&year) {
        return Err(wrong());
    }
    let month = match parts.get(1) {
        Some(m) => Month::try_from(u8::try_from(number(m, 2)?).map_err(|_| wrong())?)
            .map_err(|_| wrong())?,
        None if end => Month::December,
        None => Month::January,
    };
    let day = match parts.get(2) {
        Some(d) => u8::try_from(number(d, 2)?).map_err(|_| wrong())?,
        None if end => month.length(year),
        None => 1,
    };
    if parts.len() > 3 {
        return Err(wrong());
    }
    Date::from_calendar_date(year, month, day).map_err(|_| wrong())
}

impl Query {
    /// Reads a query from its parameters as the route and the report
    /// command take them.
    pub fn parse(
        counted: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        group_by: Option<&str>,
        k: u64,
    ) -> Result<Self, QueryError> {
        let counted = match counted {
            None | Some("") => Counted::Returnees,
            Some(c) => Counted::parse(c).ok_or_else(|| {
                bad(
                    "count",
                    format!(
                        "`{c}` is not counted; one of: {}",
                        Counted::ALL
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        };
        let from = from
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("from", "required: the period's first day (YYYY-MM-DD)"))?;
        let to = to
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("to", "required: the period's last day (YYYY-MM-DD)"))?;
        let from = parse_day("from", from, false)?;
        let to = parse_day("to", to, true)?;
        if to < from {
            return Err(bad("to", format!("{to} is before `from` ({from})")));
        }
        if to.year() - from.year() >= MAX_YEARS {
            return Err(bad(
                "to",
                format!("a period covers at most {MAX_YEARS} years"),
            ));
        }
        let mut keys = Vec::new();
        for key in group_by
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            let known = GROUP_KEYS.iter().find(|g| **g == key).ok_or_else(|| {
                bad(
                    "group_by",
                    format!(
                        "`{key}` is not a category; one of: {}",
                        GROUP_KEYS.join(", ")
                    ),
                )
            })?;
            if keys.contains(known) {
                return Err(bad("group_by", format!("`{key}` is named twice")));
            }
            keys.push(*known);
        }
        if k == 0 {
            return Err(bad("k", "must be at least 1"));
        }
        Ok(Self {
            counted,
            from,
            to,
            group_by: keys,
            k,
        })
    }

    /// The period as milliseconds since the epoch, `[start, end)`.
    pub fn span_ms(&self) -> (i64, i64) {
        let ms = |d: Date| d.midnight().assume_utc().unix_timestamp() * 1000;
        (ms(self.from), ms(self.to.next_day().unwrap_or(self.to)))
    }
}

/// A count as published: the number, or `<k` when it is suppressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Shown {
    /// The count; absent when suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// What a printed table shows: the count, or `<k`.
    pub shown: String,
}

impl Shown {
    fn of(n: u64, suppressed: bool, k: u64) -> Self {
        if suppressed {
            Self {
                count: None,
                shown: format!("<{k}"),
            }
        } else {
            Self {
                count: Some(n),
                shown: n.to_string(),
            }
        }
    }
}

/// One cell: its categories and its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Cell {
    pub keys: BTreeMap<String, String>,
    #[serde(flatten)]
    pub value: Shown,
}

/// A counted table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Table {
    pub count: String,
    pub from: String,
    pub to: String,
    pub group_by: Vec<String>,
    /// Counts below this are shown as `<k`.
    pub k: u64,
    pub cells: Vec<Cell>,
    pub total: Shown,
}

/// One person or case counted, with its categories resolved.
#[derive(Debug, Clone)]
pub struct Item {
    pub case_ref: String,
    pub message_id: String,
    pub at: i64,
    pub categories: HashMap<&'static str, String>,
}

impl Item {
    fn key(&self, group_by: &[&'static str]) -> Vec<String> {
        group_by
            .iter()
            .map(|g| {
                self.categories
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| UNKNOWN.into())
            })
            .collect()
    }
}

fn month_of(at: i64) -> (String, String) {
    let t = OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (
        format!("{:04}", t.year()),
        format!("{:04}-{:02}", t.year(), t.month() as u8),
    )
}

/// A case's facts, oldest first, to resolve what one fact leaves out.
struct CaseFacts<'a> {
    facts: Vec<&'a Fact>,
}

impl<'a> CaseFacts<'a> {
    fn first(&self, message_type: &str) -> Option<&'a Fact> {
        self.facts
            .iter()
            .copied()
            .find(|f| f.message_type == message_type && f.person.is_empty())
    }

    /// The latest fact about `person` in a message of `message_type`.
    fn person_in(&self, message_type: &str, person: &str) -> Option<&'a Fact> {
        self.facts
            .iter()
            .rev()
            .copied()
            .find(|f| f.message_type == message_type && f.person == person)
    }

    fn latest(&self, message_type: &str) -> Option<&'a Fact> {
        self.facts
            .iter()
            .rev()
            .copied()
            .find(|f| f.message_type == message_type && f.person.is_empty())
    }
}

fn put(c: &mut HashMap<&'static str, String>, key: &'static str, v: Option<&String>) {
    c.insert(key, v.cloned().unwrap_or_else(|| UNKNOWN.into()));
}

/// Categories every item has: corridor, origin, period, and the referred
/// person's as the referral recorded them.
fn categories_of(case: &CaseFacts<'_>, own: &Fact) -> HashMap<&'static str, String> {
    let mut c = HashMap::new();
    c.insert("corridor", own.corridor.clone());
    c.insert(
        "origin",
        own.case_ref
            .split('-')
            .nth(1)
            .unwrap_or(UNKNOWN)
            .to_string(),
    );
    let (year, month) = month_of(own.at);
    c.insert("year", year);
    c.insert("month", month);
    let referral = case.first("referral.notify");
    put(&mut c, "sex", referral.and_then(|r| r.sex.as_ref()));
    put(
        &mut c,
        "age_band",
        referral.and_then(|r| r.age_band.as_ref()),
    );
    put(&mut c, "minor", referral.and_then(|r| r.minor.as_ref()));
    put(&mut c, "sector", referral.and_then(|r| r.sector.as_ref()));
    put(
        &mut c,
        "recruitment_channel",
        referral.and_then(|r| r.recruitment_channel.as_ref()),
    );
    let request = case.latest("repatriation.request");
    put(
        &mut c,
        "return_channel",
        request.and_then(|r| r.return_channel.as_ref()),
    );
    put(&mut c, "gate", request.and_then(|r| r.gate.as_ref()));
    let report = case.latest("reintegration.report");
    put(&mut c, "outcome", report.and_then(|r| r.outcome.as_ref()));
    put(
        &mut c,
        "reintegration_status",
        report.and_then(|r| r.status.as_ref()),
    );
    c
}

/// The items `counted` finds among `facts` (every fact of every case
/// concerned, any date) within `[start, end)`.
pub fn items(counted: Counted, facts: &[Fact], (start, end): (i64, i64)) -> Vec<Item> {
    let mut by_case: BTreeMap<&str, CaseFacts<'_>> = BTreeMap::new();
    for f in facts {
        by_case
            .entry(f.case_ref.as_str())
            .or_insert_with(|| CaseFacts { facts: Vec::new() })
            .facts
            .push(f);
    }
    let within = |f: &Fact| f.at >= start && f.at < end;
    let mut out = Vec::new();
    for case in by_case.values_mut() {
        case.facts
            .sort_by(|a, b| (a.at, &a.message_id).cmp(&(b.at, &b.message_id)));
        let item = |f: &Fact, categories| Item {
            case_ref: f.case_ref.clone(),
            message_id: f.message_id.clone(),
            at: f.at,
            categories,
        };
        match counted {
            Counted::Referrals | Counted::Tracings => {
                let t = if counted == Counted::Referrals {
                    "referral.notify"
                } else {
                    "family-tracing.request"
                };
                if let Some(f) = case.first(t).filter(|f| within(f)) {
                    out.push(item(f, categories_of(case, f)));
                }
            }
            Counted::Reintegrations => {
                if let Some(f) = case
                    .facts
                    .iter()
                    .rev()
                    .copied()
                    .find(|f| f.message_type == "reintegration.report" && within(f))
                {
                    let mut c = categories_of(case, f);
                    put(&mut c, "outcome", f.outcome.as_ref());
                    put(&mut c, "reintegration_status", f.status.as_ref());
                    out.push(item(f, c));
                }
            }
            Counted::Returnees => {
                let mut seen = BTreeSet::new();
                for f in case.facts.iter().copied().filter(|f| {
                    f.message_type == "repatriation.handover"
                        && f.status.as_deref() == Some("handover")
                        && !f.person.is_empty()
                }) {
                    // A person handed over twice (a corrected record) is one
                    // returnee, at the first handover.
                    if !seen.insert(f.person.as_str()) || !within(f) {
                        continue;
                    }
                    let mut c = categories_of(case, f);
                    if let Some(p) = case.person_in("repatriation.request", &f.person) {
                        put(&mut c, "sex", p.sex.as_ref());
                        put(&mut c, "age_band", p.age_band.as_ref());
                        put(&mut c, "minor", p.minor.as_ref());
                    }
                    if f.gate.is_some() {
                        put(&mut c, "gate", f.gate.as_ref());
                    }
                    out.push(item(f, c));
                }
            }
        }
    }
    out
}

/// Counts `items` into the query's table, suppressing small cells.
pub fn table(query: &Query, items: &[Item]) -> Table {
    let mut counts: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for i in items {
        *counts.entry(i.key(&query.group_by)).or_default() += 1;
    }
    let keys: Vec<Vec<String>> = counts.keys().cloned().collect();
    let values: Vec<u64> = counts.values().copied().collect();
    let suppressed = suppress(&keys, &values, query.k);
    let total: u64 = values.iter().sum();
    let cells = keys
        .iter()
        .zip(&values)
        .zip(&suppressed)
        .map(|((key, n), s)| Cell {
            keys: query
                .group_by
                .iter()
                .map(|g| g.to_string())
                .zip(key.iter().cloned())
                .collect(),
            value: Shown::of(*n, *s, query.k),
        })
        .collect();
    Table {
        count: query.counted.as_str().into(),
        from: query.from.to_string(),
        to: query.to.to_string(),
        group_by: query.group_by.iter().map(|g| g.to_string()).collect(),
        k: query.k,
        cells,
        total: Shown::of(total, total > 0 && total < query.k, query.k),
    }
}

/// A duration figure: how many, median and 90th percentile in days.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Durations {
    pub what: String,
    pub n: Shown,
    /// Days, to one decimal; absent below `k` cases.
    pub median_days: Option<f64>,
    pub p90_days: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn durations(what: &str, mut ms: Vec<i64>, k: u64) -> Durations {
    ms.sort_unstable();
    let n = ms.len() as u64;
    let small = n < k;
    let days = |v: i64| (v as f64 / 86_400_000.0 * 10.0).round() / 10.0;
    Durations {
        what: what.into(),
        n: Shown::of(n, n > 0 && small, k),
        median_days: (!small && n > 0).then(|| days(percentile(&ms, 0.5))),
        p90_days: (!small && n > 0).then(|| days(percentile(&ms, 0.9))),
    }
}

/// Time from referral to acknowledgement (cases referred in the period)
/// and from referral to handover (returnees of the period).
pub fn timings(facts: &[Fact], span: (i64, i64), k: u64) -> Vec<Durations> {
    let mut referral_at: HashMap<&str, i64> = HashMap::new();
    let mut first_ack: HashMap<&str, i64> = HashMap::new();
    for f in facts.iter().filter(|f| f.person.is_empty()) {
        let slot = match f.message_type.as_str() {
            "referral.notify" => &mut referral_at,
            "referral.acknowledge" => &mut first_ack,
            _ => continue,
        };
        let e = slot.entry(f.case_ref.as_str()).or_insert(f.at);
        *e = (*e).min(f.at);
    }
    let to_ack = referral_at
        .iter()
        .filter(|(_, at)| **at >= span.0 && **at < span.1)
        .filter_map(|(case, at)| first_ack.get(case).map(|a| a - at))
        .filter(|d| *d >= 0)
        .collect();
    let to_return = items(Counted::Returnees, facts, span)
        .iter()
        .filter_map(|i| referral_at.get(i.case_ref.as_str()).map(|r| i.at - r))
        .filter(|d| *d >= 0)
        .collect();
    vec![
        durations("referral_to_acknowledgement", to_ack, k),
        durations("referral_to_handover", to_return, k),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(group_by: &str) -> Result<Query, QueryError> {
        Query::parse(
            Some("returnees"),
            Some("2026-01"),
            Some("2026"),
            Some(group_by),
            5,
        )
    }

    #[test]
    fn queries_are_checked_and_name_the_parameter() {
        let ok = q("corridor, sex").unwrap();
        assert_eq!(ok.group_by, vec!["corridor", "sex"]);
        assert_eq!(ok.to.to_string(), "2026-12-31");
        assert_eq!(q("colour").unwrap_err().parameter, "group_by");
        assert_eq!(q("sex,sex").unwrap_err().parameter, "group_by");
        let p = |from: Option<&str>, to: Option<&str>| {
            Query::parse(None, from, to, None, 5).unwrap_err().parameter
        };
        assert_eq!(p(None, Some("2026")), "from");
        assert_eq!(p(Some("2026-01-01"), None), "to");
        assert_eq!(p(Some("2026-02-01"), Some("2026-01-31")), "to");
        assert_eq!(p(Some("2026-13"), Some("2026")), "from");
        assert_eq!(p(Some("2026-02-30"), Some("2026")), "from");
        assert_eq!(p(Some("1900"), Some("2026")), "from");
        assert_eq!(p(Some("2000"), Some("2026")), "to");
        assert_eq!(
            Query::parse(Some("people"), Some("2026"), Some("2026"), None, 5)
                .unwrap_err()
                .parameter,
            "count"
        );
        assert_eq!(
            Query::parse(None, Some("2026"), Some("2026"), None, 0)
                .unwrap_err()
                .parameter,
            "k"
        );
        let leap = Query::parse(None, Some("2028-02"), Some("2028-02"), None, 5).unwrap();
        assert_eq!(leap.to.to_string(), "2028-02-29");
    }
}
