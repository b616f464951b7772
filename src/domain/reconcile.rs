//! Reconciliation: two gateways prove they count the same messages. Each
//! side tallies a corridor's messages of a period into cells (month and
//! type), each with its count and a digest of the message ids behind it;
//! cells whose digests differ are expanded into their ids, and the
//! comparison names the messages one side has and the other does not.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::facts::Fact;

/// A cell: the month (YYYY-MM, UTC) and the message type.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct CellKey {
    pub month: String,
    #[serde(rename = "type")]
    pub message_type: String,
}

/// `POST` `protocol::RECONCILE_PATH`: the period to tally (YYYY-MM-DD, YYYY-MM or
/// YYYY, inclusive) and the cells to list the message ids of.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    #[schema(example = "2026-01-01", pattern = r"^\d{4}(-\d{2}(-\d{2})?)?$")]
    pub from: String,
    #[schema(example = "2026-12-31", pattern = r"^\d{4}(-\d{2}(-\d{2})?)?$")]
    pub to: String,
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub expand: Vec<CellKey>,
}

/// One cell of a tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TallyCell {
    #[serde(flatten)]
    pub key: CellKey,
    pub count: u64,
    /// SHA-256 (hex) of the cell's message ids, sorted, one per line.
    pub digest: String,
    /// The message ids, when the cell was asked to be expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// One side's tally of a corridor and period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tally {
    /// The node that counted.
    pub node: String,
    pub corridor: String,
    pub from: String,
    pub to: String,
    pub cells: Vec<TallyCell>,
}

fn month_of(at: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), t.month() as u8)
}

fn digest_of(ids: &BTreeSet<&str>) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Tallies the messages of `facts` (a corridor's, any date) whose event
/// falls in `[start, end)`, expanding the cells in `expand`.
pub fn tally(
    node: &str,
    corridor: &str,
    (from, to): (&str, &str),
    facts: &[Fact],
    (start, end): (i64, i64),
    expand: &BTreeSet<CellKey>,
) -> Tally {
    let mut cells: BTreeMap<CellKey, BTreeSet<&str>> = BTreeMap::new();
    for f in facts
        .iter()
        .filter(|f| f.person.is_empty() && f.corridor == corridor && f.at >= start && f.at < end)
    {
        cells
            .entry(CellKey {
                month: month_of(f.at),
                message_type: f.message_type.clone(),
            })
            .or_default()
            .insert(f.message_id.as_str());
    }
    Tally {
        node: node.to_string(),
        corridor: corridor.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        cells: cells
            .into_iter()
            .map(|(key, ids)| TallyCell {
                count: ids.len() as u64,
                digest: digest_of(&ids),
                ids: expand
                    .contains(&key)
                    .then(|| ids.iter().map(|s| s.to_string()).collect()),
                key,
            })
            .collect(),
    }
}

/// A cell both sides count alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agreed {
    #[serde(flatten)]
    pub key: CellKey,
    pub count: u64,
}

/// A cell the two sides count differently, and the messages behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Differing {
    #[serde(flatten)]
    pub key: CellKey,
    pub ours: u64,
    pub theirs: u64,
    /// Messages only this node counts.
    pub only_ours: Vec<String>,
    /// Messages only the peer counts.
    pub only_theirs: Vec<String>,
}

/// Both tallies side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub corridor: String,
    pub from: String,
    pub to: String,
    pub agreed: Vec<Agreed>,
    pub differing: Vec<Differing>,
}

impl Comparison {
    pub fn agrees(&self) -> bool {
        self.differing.is_empty()
    }
}

/// The cells whose digests differ between `ours` and `theirs` (or that one
/// side lacks): those to expand.
pub fn to_expand(ours: &Tally, theirs: &Tally) -> BTreeSet<CellKey> {
    let index = |t: &Tally| -> BTreeMap<CellKey, String> {
        t.cells
            .iter()
            .map(|c| (c.key.clone(), c.digest.clone()))
            .collect()
    };
    let (a, b) = (index(ours), index(theirs));
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Compares two tallies of the same corridor and period; differing cells
/// name their messages where the tallies carry ids.
pub fn compare(ours: &Tally, theirs: &Tally) -> Comparison {
    let index = |t: &Tally| -> BTreeMap<CellKey, TallyCell> {
        t.cells.iter().map(|c| (c.key.clone(), c.clone())).collect()
    };
    let (a, b) = (index(ours), index(theirs));
    let keys: BTreeSet<&CellKey> = a.keys().chain(b.keys()).collect();
    let mut agreed = Vec::new();
    let mut differing = Vec::new();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if let (Some(x), Some(y)) = (x, y)
            && x.digest == y.digest
        {
            agreed.push(Agreed {
                key: key.clone(),
                count: x.count,
            });
            continue;
        }
        let ids = |c: Option<&TallyCell>| -> BTreeSet<String> {
            c.and_then(|c| c.ids.clone())
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        let (ix, iy) = (ids(x), ids(y));
        differing.push(Differing {
            key: key.clone(),
            ours: x.map_or(0, |c| c.count),
            theirs: y.map_or(0, |c| c.count),
            only_ours: ix.difference(&iy).cloned().collect(),
            only_theirs: iy.difference(&ix).cloned().collect(),
        });
    }
    Comparison {
        corridor: ours.corridor.clone(),
        from: ours.from.clone(),
        to: ours.to.clone(),
        agreed,
        differing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(id: &str, t: &str, at: i64) -> Fact {
        Fact {
            message_id: id.into(),
            person: String::new(),
            case_ref: "TH-KH-2026-000001".into(),
            corridor: "KH-TH".into(),
            message_type: t.into(),
            schema_version: 1,
            at,
            sex: None,
            age_band: None,
            minor: None,
            sector: None,
            recruitment_channel: None,
            return_channel: None,
            gate: None,
            outcome: None,
            status: None,
        }
    }

    #[test]
    fn a_message_one_side_lacks_is_named_in_its_cell() {
        // 2026-03-02 and 2026-04-01 (UTC).
        let (march, april) = (1_772_409_600_000, 1_775_001_600_000);
        let both = vec![
            fact("a", "referral.notify", march),
            fact("b", "referral.notify", march),
            fact("c", "repatriation.request", april),
        ];
        let span = (0, i64::MAX);
        let none = BTreeSet::new();
        let ours = tally("KH", "KH-TH", ("2026", "2026"), &both, span, &none);
        let theirs = tally("TH", "KH-TH", ("2026", "2026"), &both[1..], span, &none);
        let expand = to_expand(&ours, &theirs);
        assert_eq!(expand.len(), 1);
        let ours = tally("KH", "KH-TH", ("2026", "2026"), &both, span, &expand);
        let theirs = tally("TH", "KH-TH", ("2026", "2026"), &both[1..], span, &expand);
        let c = compare(&ours, &theirs);
        assert!(!c.agrees());
        assert_eq!(c.agreed.len(), 1);
        assert_eq!(c.agreed[0].key.month, "2026-04");
        let d = &c.differing[0];
        assert_eq!((d.key.month.as_str(), d.ours, d.theirs), ("2026-03", 2, 1));
        assert_eq!(
            (d.only_ours.clone(), d.only_theirs.len()),
            (vec!["a".to_string()], 0)
        );
        // Alike, they agree.
        assert!(compare(&ours, &ours).agrees());
    }
}
