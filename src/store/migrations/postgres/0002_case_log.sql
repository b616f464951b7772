-- One row per message of a case, sent or received, in the order this node
-- committed them: the lifecycle replays it to know a case's state.
CREATE TABLE case_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_ref   TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    direction  TEXT NOT NULL CHECK (direction IN ('out', 'in'))
);

CREATE INDEX case_log_case ON case_log (case_ref, seq);
