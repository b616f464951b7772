-- Signatures (crate::signing): the sender's detached JWS over the exact
-- envelope bytes and the receiver's over the exact receipt bytes, kept on
-- both sides with the message. NULL for messages exchanged unsigned.
ALTER TABLE outbox ADD COLUMN signature TEXT;
ALTER TABLE outbox ADD COLUMN receipt_signature TEXT;
ALTER TABLE inbox ADD COLUMN signature TEXT;
ALTER TABLE inbox ADD COLUMN receipt_signature TEXT;
