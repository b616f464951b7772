-- Acknowledgement deadlines. One row per (message expecting an answer, side).
CREATE TABLE timers (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_ref        TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    message_type    TEXT   NOT NULL,
    expected_type   TEXT   NOT NULL,
    side            TEXT   NOT NULL CHECK (side IN ('awaiting_answer', 'answer_due')),
    peer            TEXT   NOT NULL,
    agreement       TEXT   NOT NULL,
    started_at      BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('open', 'met', 'breached')),
    reminders_fired BIGINT NOT NULL DEFAULT 0,
    next_event_at   BIGINT,
    breached_at     BIGINT,
    answered_at     BIGINT,
    answer_id       TEXT,
    UNIQUE (message_id, side)
);

CREATE INDEX timers_next_event ON timers (next_event_at) WHERE next_event_at IS NOT NULL;
CREATE INDEX timers_state_due ON timers (state, due_at);
CREATE INDEX timers_case ON timers (case_ref);

CREATE TABLE case_events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_ref         TEXT   NOT NULL,
    message_id       TEXT,
    kind             TEXT   NOT NULL,
    at               BIGINT NOT NULL,
    detail           TEXT   NOT NULL, -- JSON, never personal data
    alert_state      TEXT   NOT NULL DEFAULT 'none' CHECK (alert_state IN ('none', 'pending', 'sent', 'failed')),
    alert_attempts   BIGINT NOT NULL DEFAULT 0,
    alert_next_at    BIGINT
);

CREATE INDEX case_events_case ON case_events (case_ref, id);
CREATE INDEX case_events_alerts ON case_events (alert_next_at) WHERE alert_state = 'pending';
