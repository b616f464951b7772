//! The inbox: messages received from peers, judged against their case,
//! stored idempotently by `message_id` with the receipt issued, and read
//! back as a feed.

use super::*;

#[derive(Debug, Clone)]
pub struct NewInbound {
    pub message_id: String,
    pub case_ref: String,
    pub sender: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub body: String,
    pub body_sha256: String,
    pub received_at: i64,
    /// The receipt to keep if this is the first time the message arrives.
    pub receipt: String,
    /// The sender's signature of `body`, verified.
    pub signature: Option<String>,
    /// This node's signature of `receipt`.
    pub receipt_signature: Option<String>,
    /// What the lifecycle checks.
    pub case_message: CaseMessage,
    /// The "answer due" timer this message opens.
    pub timer: Option<NewTimer>,
    /// Keyed hashes of the search terms the message yields.
    pub search: Vec<String>,
    /// The de-identified facts it yields for the statistics.
    pub facts: Vec<crate::domain::facts::Fact>,
}

#[derive(Debug, Clone)]
pub enum Received {
    /// Committed now, or earlier with identical content: the stored receipt.
    Stored {
        receipt: String,
        receipt_signature: Option<String>,
        fresh: bool,
    },
    /// A different message already arrived under this id.
    Conflict,
    /// The message makes no sense in its case (state, reply target,
    /// correction); nothing stored.
    Refused(Refusal),
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxRow {
    pub seq: i64,
    pub message_id: String,
    pub case_ref: String,
    pub sender: String,
    pub message_type: String,
    pub in_reply_to: Option<String>,
    pub body: String,
    pub received_at: i64,
    pub receipt: String,
    pub signature: Option<String>,
    pub receipt_signature: Option<String>,
}

impl InboxRow {
    pub(super) fn from_row(r: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            seq: r.get("seq")?,
            message_id: r.get("message_id")?,
            case_ref: r.get("case_ref")?,
            sender: r.get("sender")?,
            message_type: r.get("type")?,
            in_reply_to: r.get("in_reply_to")?,
            body: r.get("body")?,
            received_at: r.get("received_at")?,
            receipt: r.get("receipt")?,
            signature: r.get("signature")?,
            receipt_signature: r.get("receipt_signature")?,
        })
    }
}

impl Store {
    /// Stores a message from a peer if the case's lifecycle allows it,
    /// idempotently by `message_id`: a resend gets the stored receipt.
    pub async fn receive(&self, m: &NewInbound) -> Result<Received, StoreError> {
        // One answer per message, always.
        self.receive_many(std::slice::from_ref(m))
            .await?
            .pop()
            .ok_or(StoreError::Missing("the answer to a received message"))
    }

    /// Stores several messages from a peer in one transaction (one fsync),
    /// each judged as [`Store::receive`] would alone, in order.
    pub async fn receive_many(&self, messages: &[NewInbound]) -> Result<Vec<Received>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = WriteTx::begin(&self.write, self.backend).await?;
        // Every case lock up front, in one order, so two instances receiving
        // overlapping batches cannot deadlock.
        let mut cases: Vec<&str> = messages.iter().map(|m| m.case_ref.as_str()).collect();
        cases.sort_unstable();
        cases.dedup();
        tx.lock_cases(&cases).await?;
        // The ids already stored and the cases' histories, in one round
        // trip (a case whose messages are all resends is read for nothing).
        let mut reads = Script::of(
            format!(
                "SELECT message_id, body_sha256, receipt, receipt_signature FROM inbox WHERE message_id IN ({})",
                in_of(self.backend, messages.len())
            ),
            messages.iter().map(|m| Arg::from(&m.message_id)),
        );
        push_case_histories(&mut reads, self.backend, &cases);
        let mut sets = tx.run_sets(reads).await?.into_iter();
        // message id -> (content hash, receipt, its signature), of what is
        // stored or about to be.
        type Known = (String, String, Option<String>);
        let mut known: HashMap<String, Known> = sets
            .next()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                Ok((
                    r.get("message_id")?,
                    (
                        r.get("body_sha256")?,
                        r.get("receipt")?,
                        r.get("receipt_signature")?,
                    ),
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let wanted: std::collections::HashSet<&str> = messages
            .iter()
            .filter(|m| !known.contains_key(&m.message_id))
            .map(|m| m.case_ref.as_str())
            .collect();
        let mut histories = histories_of(&self.sealer, &sets.next().unwrap_or_default(), |c| {
            wanted.contains(c)
        })?;
        let mut fresh: Vec<&NewInbound> = Vec::new();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            if let Some((sha, receipt, receipt_signature)) = known.get(&m.message_id) {
                out.push(if *sha == m.body_sha256 {
                    Received::Stored {
                        receipt: receipt.clone(),
                        receipt_signature: receipt_signature.clone(),
                        fresh: false,
                    }
                } else {
                    Received::Conflict
                });
                continue;
            }
            let history = histories.entry(m.case_ref.clone()).or_default();
            if let Err(e) = admission::admit_in_case(&m.case_ref, history, &m.case_message) {
                out.push(Received::Refused(e));
                continue;
            }
            history.push(m.case_message.clone());
            known.insert(
                m.message_id.clone(),
                (
                    m.body_sha256.clone(),
                    m.receipt.clone(),
                    m.receipt_signature.clone(),
                ),
            );
            out.push(Received::Stored {
                receipt: m.receipt.clone(),
                receipt_signature: m.receipt_signature.clone(),
                fresh: true,
            });
            fresh.push(m);
        }
        let mut writes = Script::new();
        if !fresh.is_empty() {
            writes.push(
                format!(
                    "INSERT INTO inbox (message_id, case_ref, sender, type, in_reply_to, body, body_sha256, received_at, receipt, \
                     signature, receipt_signature) VALUES {}",
                    values_of(self.backend, fresh.len(), 11)
                ),
                fresh.iter().flat_map(|m| {
                    [
                        Arg::from(&m.message_id),
                        Arg::from(&m.case_ref),
                        Arg::from(&m.sender),
                        Arg::from(&m.message_type),
                        Arg::from(&m.in_reply_to),
                        Arg::String(self.sealer.seal(&m.message_id, &m.body)),
                        Arg::from(&m.body_sha256),
                        Arg::Int(m.received_at),
                        Arg::from(&m.receipt),
                        Arg::from(&m.signature),
                        Arg::from(&m.receipt_signature),
                    ]
                }),
            );
            push_case_log(
                &mut writes,
                self.backend,
                fresh
                    .iter()
                    .map(|m| (m.case_ref.as_str(), m.message_id.as_str())),
                "in",
            );
            super::search::push_search(
                &mut writes,
                self.backend,
                fresh
                    .iter()
                    .flat_map(|m| m.search.iter().map(|d| (m.case_ref.as_str(), d.as_str())))
                    .collect(),
            );
            super::facts::push_facts(
                &mut writes,
                self.backend,
                fresh.iter().flat_map(|m| m.facts.iter()),
            );
            let timers: Vec<&NewTimer> = fresh.iter().filter_map(|m| m.timer.as_ref()).collect();
            timers::push_timers(&mut writes, self.backend, &timers);
        }
        // An answer closes the timers of the message it answers, which
        // takes reads; without one, the writes go with the `COMMIT`.
        if fresh.iter().any(|m| m.in_reply_to.is_some()) {
            tx.run(writes).await?;
            writes = Script::new();
            for m in &fresh {
                if let Some(reply_to) = &m.in_reply_to {
                    timers::close_timers(
                        &mut tx,
                        Side::AwaitingAnswer,
                        reply_to,
                        &m.message_type,
                        &m.message_id,
                        m.received_at,
                    )
                    .await?;
                }
            }
        }
        tx.commit(writes).await?;
        Ok(out)
    }

    /// Received messages after `cursor`, oldest first.
    pub async fn inbox_after(&self, cursor: i64, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
        let rows = query("SELECT * FROM inbox WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(cursor)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| self.open_inbox(InboxRow::from_row(r)?))
            .collect()
    }

    fn open_inbox(&self, mut row: InboxRow) -> Result<InboxRow, StoreError> {
        row.body = self.sealer.open(&row.message_id, &row.body)?;
        Ok(row)
    }

    pub async fn inbound(&self, message_id: &str) -> Result<Option<InboxRow>, StoreError> {
        let row = query("SELECT * FROM inbox WHERE message_id = $1")
            .bind(message_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref()
            .map(|r| self.open_inbox(InboxRow::from_row(r)?))
            .transpose()
    }
}
