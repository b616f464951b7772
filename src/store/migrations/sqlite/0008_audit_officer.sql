-- The officer a local caller acted for (the On-Behalf-Of header), as the
-- case system sent it; NULL when none was named, as in every row written
-- before this column existed. It enters a row's chain hash only when
-- present (crate::store::audit), so those rows keep their hashes.
ALTER TABLE audit ADD COLUMN officer TEXT;
-- GET /v1/audit?actor= matches the caller's name or the officer id.
CREATE INDEX audit_officer ON audit (officer, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
