-- Outbox: messages this node submitted, kept until the peer's receipt.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- submission order
    message_id      TEXT    NOT NULL UNIQUE,
    case_ref        TEXT    NOT NULL,
    peer            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    in_reply_to     TEXT,
    body            TEXT    NOT NULL, -- the exact envelope bytes sent to the peer
    body_sha256     TEXT    NOT NULL,
    submit_sha256   TEXT    NOT NULL, -- of the document as submitted, for idempotent resubmits
    state           TEXT    NOT NULL CHECK (state IN ('queued', 'delivering', 'delivered', 'rejected', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, -- unix ms
    last_error      TEXT,
    receipt         TEXT,
    submitted_at    INTEGER NOT NULL,
    delivered_at    INTEGER,
    deadline_at     INTEGER NOT NULL
);

-- The delivery scan only touches pending rows.
CREATE INDEX outbox_pending ON outbox (next_attempt_at, seq) WHERE state IN ('queued', 'delivering');
-- Per case and peer ordering: "is there an earlier pending message of this case?"
CREATE INDEX outbox_case ON outbox (peer, case_ref, seq);

-- Inbox: messages peers delivered to this node; seq is the feed cursor.
CREATE TABLE inbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL UNIQUE,
    case_ref    TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    in_reply_to TEXT,
    body        TEXT    NOT NULL,
    body_sha256 TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    receipt     TEXT    NOT NULL
);

CREATE INDEX inbox_case ON inbox (case_ref, seq);
