-- PostgreSQL twin of migrations/sqlite/0006: outbox bodies apart from the
-- delivery state, which claims and outcomes rewrite.
CREATE TABLE outbox_body (
    seq  BIGINT PRIMARY KEY, -- outbox.seq, inserted in the same transaction
    body TEXT   NOT NULL     -- the exact envelope bytes sent to the peer (sealed)
);

INSERT INTO outbox_body (seq, body) SELECT seq, body FROM outbox;

ALTER TABLE outbox DROP COLUMN body;
