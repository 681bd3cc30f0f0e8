-- Version 13: the receiving clinician's recognition decisions (互认决定). One row per decision, never
-- updated: a clinician who changes their mind records a new decision. What the rates need (item,
-- performing site, decision, reason, whether the result was shown recognised, time) is on the row, so
-- counting reads this table only.
CREATE TABLE recognition_decisions (
    decision_id      TEXT PRIMARY KEY,       -- ULID
    result_kind      TEXT NOT NULL,          -- 'report' (imaging/ECG) | 'lab'
    result_id        TEXT NOT NULL,          -- report id, or lab panel id
    result_seq       BIGINT,                 -- lab: the result's position in its panel (from 1); NULL: the whole panel
    item             TEXT NOT NULL,          -- modality, or LOINC (else the lab's code)
    performing_site  TEXT NOT NULL,
    patient_key      TEXT NOT NULL,
    deciding_site    TEXT NOT NULL,
    decided_by       TEXT NOT NULL,
    decision         TEXT NOT NULL,          -- 'accepted' | 'declined'
    reason           TEXT,                   -- a decline's reason code (policy::DeclineReason)
    reason_text      TEXT,
    recognised       BIGINT NOT NULL,        -- 1 when the result was shown recognised (HR) at the time
    decided_at       BIGINT NOT NULL         -- epoch ms
);
CREATE INDEX recognition_decisions_by_time ON recognition_decisions (decided_at);
CREATE INDEX recognition_decisions_by_result ON recognition_decisions (result_kind, result_id);
