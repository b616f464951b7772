-- One row per message of a case, sent or received, in the order this node
-- committed them: the lifecycle replays it to know a case's state.
CREATE TABLE case_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    case_ref   TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    direction  TEXT NOT NULL CHECK (direction IN ('out', 'in'))
);

CREATE INDEX case_log_case ON case_log (case_ref, seq);

INSERT INTO case_log (case_ref, message_id, direction)
SELECT case_ref, message_id, direction FROM (
    SELECT case_ref, message_id, 'out' AS direction, submitted_at AS at FROM outbox
    UNION ALL
    SELECT case_ref, message_id, 'in' AS direction, received_at AS at FROM inbox
) ORDER BY at;
