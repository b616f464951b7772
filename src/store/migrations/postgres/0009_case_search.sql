-- Case search: keyed hashes (HMAC-SHA256 under a node key) of the terms a
-- message yields (a document number, the receiver's case number), each
-- with its case. The database never holds a searchable clear number, and
-- a copy of it without the key finds nothing. Written with the message.
CREATE TABLE case_search (
    digest TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    PRIMARY KEY (digest, case_ref)
);
