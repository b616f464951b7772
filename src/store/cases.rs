//! A case's history as the store keeps it: the messages that count, in
//! commit order (what admission judges a new message against), the case
//! log, and the reads of a whole case.

use super::*;

/// The messages of a case that count, in the order this node committed
/// them: everything received, and everything sent that the peer has not
/// refused (`rejected`) or that did not die undelivered (`dead`).
pub(super) async fn case_history(
    on: impl Target,
    backend: Backend,
    sealer: &Sealer,
    case_ref: &str,
) -> Result<Vec<CaseMessage>, StoreError> {
    let mut q = query(case_histories_sql(backend, 1));
    q = q.bind(case_ref);
    Ok(histories_of(sealer, &q.fetch_all(on).await?, |_| true)?
        .remove(case_ref)
        .unwrap_or_default())
}

/// The read of [`case_histories`], for `n` cases bound in order.
pub(super) fn case_histories_sql(backend: Backend, n: usize) -> String {
    format!(
        "SELECT l.case_ref, l.message_id, COALESCE(ob.body, i.body) AS body FROM case_log l \
         LEFT JOIN outbox o ON l.direction = 'out' AND o.message_id = l.message_id \
         LEFT JOIN outbox_body ob ON ob.seq = o.seq \
         LEFT JOIN inbox i ON l.direction = 'in' AND i.message_id = l.message_id \
         WHERE l.case_ref IN ({}) AND (o.state IS NULL OR o.state NOT IN ('rejected', 'dead')) \
         ORDER BY l.seq",
        in_of(backend, n)
    )
}

/// [`case_histories`] as a statement of a [`Script`] (none for no cases).
pub(super) fn push_case_histories<'a>(
    script: &mut Script<'a>,
    backend: Backend,
    cases: &[&'a str],
) -> bool {
    if cases.is_empty() {
        return false;
    }
    script.push(
        case_histories_sql(backend, cases.len()),
        cases.iter().map(|c| Arg::Str(c)),
    );
    true
}

/// Case histories from the rows of [`case_histories_sql`], of the cases
/// `wanted` only: the others' bodies are not opened (a batch of resends
/// needs no history, and must not fail on a body it does not need).
pub(super) fn histories_of(
    sealer: &Sealer,
    rows: &[Row],
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Vec<CaseMessage>>, StoreError> {
    let mut histories: HashMap<String, Vec<CaseMessage>> = HashMap::new();
    for r in rows {
        let case_ref: &str = r.get("case_ref")?;
        if !wanted(case_ref) {
            continue;
        }
        let Some(sealed) = r.get::<Option<&str>>("body")? else {
            continue;
        };
        let body = sealer.open(r.get::<&str>("message_id")?, sealed)?;
        if let Some(m) = CaseMessage::from_stored(&body) {
            histories.entry(case_ref.to_string()).or_default().push(m);
        }
    }
    Ok(histories)
}

/// Case-log entries, in commit order (a multi-row insert assigns `seq` in
/// the order of its rows).
pub(super) fn push_case_log<'a>(
    script: &mut Script<'a>,
    backend: Backend,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    direction: &'static str,
) {
    let n = entries.len();
    if n == 0 {
        return;
    }
    script.push(
        format!(
            "INSERT INTO case_log (case_ref, message_id, direction) VALUES {}",
            values_of(backend, n, 3)
        ),
        entries.flat_map(|(case_ref, message_id)| {
            [
                Arg::Str(case_ref),
                Arg::Str(message_id),
                Arg::Str(direction),
            ]
        }),
    );
}

pub(super) const INBOX_OF_CASE: &str = "SELECT * FROM inbox WHERE case_ref = $1 ORDER BY seq";

/// Which way a message of a case went, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// One message of a case as this node exchanged it, with what proves it:
/// the envelope's exact bytes (opened), the sender's signature, and the
/// receipt with its signature (for a sent message, once delivered).
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// The case log's order: the order this node committed the case's
    /// messages in, which its lifecycle replays.
    pub seq: i64,
    pub direction: Direction,
    pub message_id: String,
    pub message_type: String,
    /// The other node: the receiver of a sent message, the sender of a
    /// received one.
    pub peer: String,
    /// Missing only if the store lost it; a retention skeleton after a purge.
    pub body: Option<String>,
    pub signature: Option<String>,
    pub receipt: Option<String>,
    pub receipt_signature: Option<String>,
    /// A sent message's delivery state.
    pub state: Option<OutState>,
}

/// The case log joined to each entry's message, sent (`o`, its body `ob`)
/// or received (`i`): one row per message, whichever table holds it.
pub(super) const LOGGED_MESSAGES: &str = "case_log l \
     LEFT JOIN outbox o ON l.direction = 'out' AND o.message_id = l.message_id \
     LEFT JOIN outbox_body ob ON ob.seq = o.seq \
     LEFT JOIN inbox i ON l.direction = 'in' AND i.message_id = l.message_id";

impl Store {
    /// Every message of the case this node sent or received, in the case
    /// log's order, with its bytes, signatures and receipt.
    pub async fn case_exchange(&self, case_ref: &str) -> Result<Vec<Exchanged>, StoreError> {
        let rows = query(
            format!(
                "SELECT l.seq, l.direction, l.message_id, o.state, COALESCE(o.type, i.type) AS type, \
                 COALESCE(o.peer, i.sender) AS peer, COALESCE(ob.body, i.body) AS body, \
                 COALESCE(o.signature, i.signature) AS signature, COALESCE(o.receipt, i.receipt) AS receipt, \
                 COALESCE(o.receipt_signature, i.receipt_signature) AS receipt_signature \
                 FROM {LOGGED_MESSAGES} WHERE l.case_ref = $1 ORDER BY l.seq"
            ),
        )
        .bind(case_ref)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let message_id: String = r.get("message_id")?;
                let body = r
                    .get::<Option<&str>>("body")?
                    .map(|sealed| self.sealer.open(&message_id, sealed))
                    .transpose()?;
                Ok(Exchanged {
                    seq: r.get("seq")?,
                    direction: match r.get::<&str>("direction")? {
                        "out" => Direction::Sent,
                        "in" => Direction::Received,
                        other => {
                            return Err(StoreError::Row {
                                column: "direction".to_string(),
                                message: format!("unknown direction `{other}`"),
                            });
                        }
                    },
                    message_type: r.get::<Option<String>>("type")?.unwrap_or_default(),
                    peer: r.get::<Option<String>>("peer")?.unwrap_or_default(),
                    body,
                    signature: r.get("signature")?,
                    receipt: r.get("receipt")?,
                    receipt_signature: r.get("receipt_signature")?,
                    state: r
                        .get::<Option<&str>>("state")?
                        .map(OutState::parse)
                        .transpose()?,
                    message_id,
                })
            })
            .collect()
    }

    /// The case's state on this node, if the case exists.
    pub async fn case_state(&self, case_ref: &str) -> Result<Option<CaseState>, StoreError> {
        let history = self.case_history(case_ref).await?;
        Ok(lifecycle::replay(case_ref, &history))
    }

    /// The lifecycle's view of every message of the case, sent and
    /// received, in the order the case saw them.
    pub async fn case_history(&self, case_ref: &str) -> Result<Vec<CaseMessage>, StoreError> {
        case_history(&self.read, self.backend, &self.sealer, case_ref).await
    }

    /// Everything this node sent and received for a case.
    pub async fn case_messages(
        &self,
        case_ref: &str,
    ) -> Result<(Vec<OutboxRow>, Vec<InboxRow>), StoreError> {
        let out = query(format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE case_ref = $1 ORDER BY seq"
        ))
        .bind(case_ref)
        .fetch_all(&self.read)
        .await?;
        let inb = query(INBOX_OF_CASE)
            .bind(case_ref)
            .fetch_all(&self.read)
            .await?;
        Ok((
            out.iter()
                .map(OutboxRow::from_row)
                .collect::<Result<_, _>>()?,
            inb.iter()
                .map(InboxRow::from_row)
                .collect::<Result<_, _>>()?,
        ))
    }
}
