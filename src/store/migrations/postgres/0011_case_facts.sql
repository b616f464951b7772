-- De-identified facts for the statistics (domain::facts): one row per
-- message (person '') and per person a message lists, written in the
-- transaction that commits the message. Categories only: no name, no date
-- of birth, no document number, no free text, so reports read this table
-- without the node's keys and it outlives the purge of a case's bodies.
-- Rows of messages stored before this table are back-filled at start.
CREATE TABLE case_facts (
    message_id TEXT NOT NULL,
    person TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    corridor TEXT NOT NULL,
    type TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    at BIGINT NOT NULL,
    sex TEXT,
    age_band TEXT,
    minor TEXT,
    sector TEXT,
    recruitment_channel TEXT,
    return_channel TEXT,
    gate TEXT,
    outcome TEXT,
    status TEXT,
    -- Clustered by case: a period's statistics read every fact of the
    -- cases it concerns, and the key serves that without an index of its
    -- own (fewer B-trees for every message's commit to write).
    PRIMARY KEY (case_ref, message_id, person)
);
-- A period's facts, by corridor (statistics, reconciliation).
CREATE INDEX case_facts_at ON case_facts (at);
