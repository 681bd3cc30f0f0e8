-- Version 10: the audit trail becomes a hash chain. Each event gets a sequence number, the hash of the
-- event before it and its own hash (SHA-256 over the previous hash and the event's fields); the head
-- row holds the last sequence number and hash, and every insert moves it in the same transaction, so
-- an edited, removed, inserted or reordered event breaks the chain (`yilian audit verify`). Events
-- written before this version keep NULL here and are reported as unchained.
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_by_seq ON audit_events (seq);
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,                  -- always 1
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
