-- Outbox bodies apart from the delivery state. A claim and an outcome each
-- rewrite the state row; with the ~3 KB sealed body inside it, every
-- rewrite put a whole page in the WAL (and again at checkpoint): about
-- 30 KB written per 2 KB message sent. Bodies are written once.
CREATE TABLE outbox_body (
    seq  INTEGER PRIMARY KEY, -- outbox.seq, inserted in the same transaction
    body TEXT    NOT NULL     -- the exact envelope bytes sent to the peer (sealed)
);

INSERT INTO outbox_body (seq, body) SELECT seq, body FROM outbox;

ALTER TABLE outbox DROP COLUMN body;
