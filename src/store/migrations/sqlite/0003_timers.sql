-- Acknowledgement deadlines. One row per (message expecting an answer, side):
-- the sender's 'awaiting_answer' and the receiver's 'answer_due'.
CREATE TABLE timers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
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

-- The scheduler's only queries: the earliest next event, and the events due now.
CREATE INDEX timers_next_event ON timers (next_event_at) WHERE next_event_at IS NOT NULL;
CREATE INDEX timers_state_due ON timers (state, due_at);
CREATE INDEX timers_case ON timers (case_ref);

-- What happened to a case besides its messages: reminders, breaches,
-- answers, dead messages. Each may be sent once to the operator webhook.
CREATE TABLE case_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    case_ref         TEXT    NOT NULL,
    message_id       TEXT,
    kind             TEXT    NOT NULL,
    at               INTEGER NOT NULL,
    detail           TEXT    NOT NULL, -- JSON, never personal data
    alert_state      TEXT    NOT NULL DEFAULT 'none' CHECK (alert_state IN ('none', 'pending', 'sent', 'failed')),
    alert_attempts   INTEGER NOT NULL DEFAULT 0,
    alert_next_at    INTEGER
);

CREATE INDEX case_events_case ON case_events (case_ref, id);
CREATE INDEX case_events_alerts ON case_events (alert_next_at) WHERE alert_state = 'pending';
