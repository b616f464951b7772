-- Withdrawals of consent this node received: the case, the message that
-- withdrew it, and when the payloads received in the case were reduced to
-- what the agreement allows without consent. Their signed bytes are gone
-- then, so the case's evidence bundle is refused, as for a purged case.
CREATE TABLE consent_withdrawals (
    case_ref TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reduced_at BIGINT NOT NULL,
    PRIMARY KEY (case_ref, message_id)
);
