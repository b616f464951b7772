-- A leaner schema for the same rows (SQLite only; PostgreSQL has neither
-- AUTOINCREMENT nor this cost).
--
-- * No AUTOINCREMENT. It keeps a row per table in sqlite_sequence, which
--   every transaction that inserts rewrites: one more B-tree page in the WAL
--   for each commit. Plain INTEGER PRIMARY KEY takes the largest key plus
--   one, the same order, and the store never deletes a row (the audit log
--   refuses deletes; a purge rewrites bodies), so no key is ever reused.
-- * audit_officer holds only the rows that name an officer: most do not,
--   and a partial index is not touched by a row outside it. `officer = ?`
--   implies `officer IS NOT NULL`, so the lookups use it as before.
--
-- Each table is rebuilt with every row and the keys it had; its indexes
-- and triggers are made again on the new table.

CREATE TABLE outbox_lean (
    seq             INTEGER PRIMARY KEY, -- submission order
    message_id      TEXT    NOT NULL UNIQUE,
    case_ref        TEXT    NOT NULL,
    peer            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    in_reply_to     TEXT,
    body_sha256     TEXT    NOT NULL,
    submit_sha256   TEXT    NOT NULL, -- of the document as submitted, for idempotent resubmits
    state           TEXT    NOT NULL CHECK (state IN ('queued', 'delivering', 'delivered', 'rejected', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, -- unix ms
    last_error      TEXT,
    receipt         TEXT,
    submitted_at    INTEGER NOT NULL,
    delivered_at    INTEGER,
    deadline_at     INTEGER NOT NULL,
    signature         TEXT,
    receipt_signature TEXT
);
INSERT INTO outbox_lean (seq, message_id, case_ref, peer, type, in_reply_to, body_sha256, submit_sha256,
    state, attempts, next_attempt_at, last_error, receipt, submitted_at, delivered_at, deadline_at,
    signature, receipt_signature)
SELECT seq, message_id, case_ref, peer, type, in_reply_to, body_sha256, submit_sha256,
    state, attempts, next_attempt_at, last_error, receipt, submitted_at, delivered_at, deadline_at,
    signature, receipt_signature
FROM outbox ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_lean RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (next_attempt_at, seq) WHERE state IN ('queued', 'delivering');
CREATE INDEX outbox_case ON outbox (peer, case_ref, seq);

CREATE TABLE inbox_lean (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT    NOT NULL UNIQUE,
    case_ref    TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    in_reply_to TEXT,
    body        TEXT    NOT NULL,
    body_sha256 TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    receipt     TEXT    NOT NULL,
    signature         TEXT,
    receipt_signature TEXT
);
INSERT INTO inbox_lean (seq, message_id, case_ref, sender, type, in_reply_to, body, body_sha256,
    received_at, receipt, signature, receipt_signature)
SELECT seq, message_id, case_ref, sender, type, in_reply_to, body, body_sha256,
    received_at, receipt, signature, receipt_signature
FROM inbox ORDER BY seq;
DROP TABLE inbox;
ALTER TABLE inbox_lean RENAME TO inbox;
CREATE INDEX inbox_case ON inbox (case_ref, seq);

CREATE TABLE case_log_lean (
    seq        INTEGER PRIMARY KEY,
    case_ref   TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    direction  TEXT NOT NULL CHECK (direction IN ('out', 'in'))
);
INSERT INTO case_log_lean (seq, case_ref, message_id, direction)
SELECT seq, case_ref, message_id, direction FROM case_log ORDER BY seq;
DROP TABLE case_log;
ALTER TABLE case_log_lean RENAME TO case_log;
CREATE INDEX case_log_case ON case_log (case_ref, seq);

CREATE TABLE timers_lean (
    id              INTEGER PRIMARY KEY,
    case_ref        TEXT    NOT NULL,
    message_id      TEXT    NOT NULL, -- the message that expects an answer
    message_type    TEXT    NOT NULL,
    expected_type   TEXT    NOT NULL,
    side            TEXT    NOT NULL CHECK (side IN ('awaiting_answer', 'answer_due')),
    peer            TEXT    NOT NULL,
    agreement       TEXT    NOT NULL,
    started_at      INTEGER NOT NULL, -- the receipt time of the message
    due_at          INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'met', 'breached')),
    reminders_fired INTEGER NOT NULL DEFAULT 0,
    next_event_at   INTEGER,          -- next reminder or breach; NULL when nothing is left to fire
    breached_at     INTEGER,
    answered_at     INTEGER,
    answer_id       TEXT,
    UNIQUE (message_id, side)
);
INSERT INTO timers_lean (id, case_ref, message_id, message_type, expected_type, side, peer, agreement,
    started_at, due_at, state, reminders_fired, next_event_at, breached_at, answered_at, answer_id)
SELECT id, case_ref, message_id, message_type, expected_type, side, peer, agreement,
    started_at, due_at, state, reminders_fired, next_event_at, breached_at, answered_at, answer_id
FROM timers ORDER BY id;
DROP TABLE timers;
ALTER TABLE timers_lean RENAME TO timers;
CREATE INDEX timers_next_event ON timers (next_event_at) WHERE next_event_at IS NOT NULL;
CREATE INDEX timers_state_due ON timers (state, due_at);
CREATE INDEX timers_case ON timers (case_ref);

CREATE TABLE case_events_lean (
    id               INTEGER PRIMARY KEY,
    case_ref         TEXT    NOT NULL,
    message_id       TEXT,
    kind             TEXT    NOT NULL,
    at               INTEGER NOT NULL,
    detail           TEXT    NOT NULL, -- JSON, never personal data
    alert_state      TEXT    NOT NULL DEFAULT 'none' CHECK (alert_state IN ('none', 'pending', 'sent', 'failed')),
    alert_attempts   INTEGER NOT NULL DEFAULT 0,
    alert_next_at    INTEGER
);
INSERT INTO case_events_lean (id, case_ref, message_id, kind, at, detail, alert_state, alert_attempts, alert_next_at)
SELECT id, case_ref, message_id, kind, at, detail, alert_state, alert_attempts, alert_next_at
FROM case_events ORDER BY id;
DROP TABLE case_events;
ALTER TABLE case_events_lean RENAME TO case_events;
CREATE INDEX case_events_case ON case_events (case_ref, id);
CREATE INDEX case_events_alerts ON case_events (alert_next_at) WHERE alert_state = 'pending';

CREATE TABLE audit_lean (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    case_ref   TEXT,
    message_id TEXT,
    result     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    officer    TEXT
);
INSERT INTO audit_lean (seq, at, actor, role, action, case_ref, message_id, result, prev_hash, hash, officer)
SELECT seq, at, actor, role, action, case_ref, message_id, result, prev_hash, hash, officer
FROM audit ORDER BY seq;
DROP TABLE audit;
ALTER TABLE audit_lean RENAME TO audit;
CREATE INDEX audit_case ON audit (case_ref, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_officer ON audit (officer, seq) WHERE officer IS NOT NULL;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
