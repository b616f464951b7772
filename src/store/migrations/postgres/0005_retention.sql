-- Cases whose payloads were purged under their agreement's retention period.
CREATE TABLE purged_cases (
    case_ref  TEXT   PRIMARY KEY,
    state     TEXT   NOT NULL,
    purged_at BIGINT NOT NULL
);
