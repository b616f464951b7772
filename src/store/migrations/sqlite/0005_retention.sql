-- Cases whose payloads were purged under their agreement's retention period.
-- Metadata, receipts, timers and the audit log are kept.
CREATE TABLE purged_cases (
    case_ref  TEXT    PRIMARY KEY,
    state     TEXT    NOT NULL,
    purged_at INTEGER NOT NULL
);
