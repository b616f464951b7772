-- PostgreSQL twin of migrations/sqlite: the same tables, columns and
-- meaning; times are unix milliseconds (BIGINT) in both.

-- Outbox: messages this node submitted, kept until the peer's receipt.
CREATE TABLE outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- submission order
    message_id      TEXT   NOT NULL UNIQUE,
    case_ref        TEXT   NOT NULL,
    peer            TEXT   NOT NULL,
    type            TEXT   NOT NULL,
    in_reply_to     TEXT,
    body            TEXT   NOT NULL, -- the exact envelope bytes sent to the peer (sealed)
    body_sha256     TEXT   NOT NULL,
    submit_sha256   TEXT   NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('queued', 'delivering', 'delivered', 'rejected', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL, -- unix ms; for a claimed row, the end of its lease
    last_error      TEXT,
    receipt         TEXT,
    submitted_at    BIGINT NOT NULL,
    delivered_at    BIGINT,
    deadline_at     BIGINT NOT NULL
);

CREATE INDEX outbox_pending ON outbox (next_attempt_at, seq) WHERE state IN ('queued', 'delivering');
CREATE INDEX outbox_case ON outbox (peer, case_ref, seq);

CREATE TABLE inbox (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT   NOT NULL UNIQUE,
    case_ref    TEXT   NOT NULL,
    sender      TEXT   NOT NULL,
    type        TEXT   NOT NULL,
    in_reply_to TEXT,
    body        TEXT   NOT NULL,
    body_sha256 TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    receipt     TEXT   NOT NULL
);

CREATE INDEX inbox_case ON inbox (case_ref, seq);
