//! The annual report a ministry files, in the shape of the NCCT's tables:
//! returnees by corridor, sex and minors; by exploitation sector, return
//! channel and border gate; referrals, tracings, returnees and
//! reintegrations by corridor; reintegration outcomes; and how long cases
//! took. Every table is suppressed as the statistics route suppresses it.

use serde::Serialize;

use crate::domain::statistics::{self, Counted, Durations, Query, QueryError, Table};
use crate::store::{Store, StoreError};

/// The tables, by title and what they count.
const TABLES: &[(&str, Counted, &str)] = &[
    (
        "Returnees by corridor, sex and minors",
        Counted::Returnees,
        "corridor,sex,minor",
    ),
    (
        "Returnees by corridor and age band",
        Counted::Returnees,
        "corridor,age_band",
    ),
    (
        "Referrals by exploitation sector",
        Counted::Referrals,
        "corridor,sector",
    ),
    (
        "Referrals by recruitment channel",
        Counted::Referrals,
        "corridor,recruitment_channel",
    ),
    (
        "Returnees by return channel",
        Counted::Returnees,
        "corridor,return_channel",
    ),
    (
        "Returnees by border gate",
        Counted::Returnees,
        "corridor,gate",
    ),
    ("Referrals by corridor", Counted::Referrals, "corridor"),
    ("Family tracings by corridor", Counted::Tracings, "corridor"),
    ("Returnees by corridor", Counted::Returnees, "corridor"),
    (
        "Reintegration follow-ups by outcome and status",
        Counted::Reintegrations,
        "corridor,outcome,reintegration_status",
    ),
];

/// One titled table of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    #[serde(flatten)]
    pub table: Table,
}

/// The report of one year.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub node: String,
    pub year: i32,
    pub k: u64,
    pub sections: Vec<Section>,
    pub timings: Vec<Durations>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counts the report of `year` from `store`.
pub async fn build(store: &Store, node: &str, year: i32, k: u64) -> Result<Report, ReportError> {
    let y = year.to_string();
    let mut sections = Vec::new();
    let mut timings = Vec::new();
    for (title, counted, group_by) in TABLES {
        let query = Query::parse(
            Some(counted.as_str()),
            Some(&y),
            Some(&y),
            Some(group_by),
            k,
        )?;
        if timings.is_empty() {
            timings = crate::app::statistics::timings(store, &query).await?;
        }
        sections.push(Section {
            title: title.to_string(),
            table: crate::app::statistics::table(store, &query).await?,
        });
    }
    Ok(Report {
        node: node.to_string(),
        year,
        k,
        sections,
        timings,
    })
}

/// How a report is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
    Md,
}

impl Report {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("a report serializes") + "\n",
            Format::Csv => self.csv(),
            Format::Md => self.markdown(),
        }
    }

    /// One CSV file: a `table` column names each row's table; the
    /// categories a table is not grouped by are empty.
    fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["table", "count_of"];
        header.extend(statistics::GROUP_KEYS);
        header.push("count");
        // Writing to memory cannot fail.
        let _ = w.write_record(&header);
        for s in &self.sections {
            let mut rows: Vec<(Vec<String>, &str)> = s
                .table
                .cells
                .iter()
                .map(|c| {
                    let keys = statistics::GROUP_KEYS
                        .iter()
                        .map(|g| c.keys.get(*g).cloned().unwrap_or_default())
                        .collect();
                    (keys, c.value.shown.as_str())
                })
                .collect();
            rows.push((
                statistics::GROUP_KEYS
                    .iter()
                    .map(|_| String::new())
                    .collect(),
                s.table.total.shown.as_str(),
            ));
            for (i, (keys, shown)) in rows.iter().enumerate() {
                let last = i + 1 == rows.len();
                let mut record = vec![
                    s.title.clone(),
                    if last {
                        format!("{} (total)", s.table.count)
                    } else {
                        s.table.count.clone()
                    },
                ];
                record.extend(keys.iter().cloned());
                record.push(shown.to_string());
                let _ = w.write_record(&record);
            }
        }
        for t in &self.timings {
            let mut record = vec![format!("Days: {}", t.what), "n".to_string()];
            record.extend(statistics::GROUP_KEYS.iter().map(|_| String::new()));
            record.push(t.n.shown.clone());
            let _ = w.write_record(&record);
            for (label, v) in [("median_days", t.median_days), ("p90_days", t.p90_days)] {
                let mut record = vec![format!("Days: {}", t.what), label.to_string()];
                record.extend(statistics::GROUP_KEYS.iter().map(|_| String::new()));
                record.push(v.map(|d| d.to_string()).unwrap_or_default());
                let _ = w.write_record(&record);
            }
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "# Homeward statistics {}, node {}\n\nDe-identified; counts below {} are shown as `<{}`, \
             and so are the cells that would give them back.\n",
            self.year, self.node, self.k, self.k
        );
        for s in &self.sections {
            out.push_str(&format!("\n## {}\n\n", s.title));
            let keys = &s.table.group_by;
            out.push_str(&format!("| {} | {} |\n", keys.join(" | "), s.table.count));
            out.push_str(&format!("|{}---:|\n", "---|".repeat(keys.len())));
            for c in &s.table.cells {
                let values: Vec<&str> = keys
                    .iter()
                    .map(|k| c.keys.get(k).map_or("", String::as_str))
                    .collect();
                out.push_str(&format!("| {} | {} |\n", values.join(" | "), c.value.shown));
            }
            let blanks = vec![""; keys.len().saturating_sub(1)];
            out.push_str(&format!(
                "| **total**{} | **{}** |\n",
                blanks.iter().map(|_| " |").collect::<String>(),
                s.table.total.shown
            ));
        }
        out.push_str("\n## Days taken\n\n| from referral to | cases | median | p90 |\n|---|---:|---:|---:|\n");
        for t in &self.timings {
            let d = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |d| format!("{d}"));
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                t.what.trim_start_matches("referral_to_"),
                t.n.shown,
                d(t.median_days),
                d(t.p90_days)
            ));
        }
        out
    }
}
