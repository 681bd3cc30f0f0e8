-- Version 11: lab review, release and critical values (危急值).
-- A panel is decided at ingest, in the same transaction: `awaiting_review` (a lab physician of the
-- review pool signs it off: `released`) or `auto_released` by a configured rule. Published panels
-- (released, auto_released) are what other member hospitals see.
ALTER TABLE lab_panels ADD COLUMN review_pool TEXT;       -- the pool that reviews it (NULL: none configured)
ALTER TABLE lab_panels ADD COLUMN decision TEXT;          -- the policy's explanation, for people
ALTER TABLE lab_panels ADD COLUMN release_rule TEXT;      -- the auto-release rule, when one applied
ALTER TABLE lab_panels ADD COLUMN released_at BIGINT;
ALTER TABLE lab_panels ADD COLUMN released_by TEXT;       -- the lab physician (NULL when auto-released)
ALTER TABLE lab_panels ADD COLUMN critical_count BIGINT NOT NULL DEFAULT 0;
CREATE INDEX lab_panels_review ON lab_panels (review_pool, state, critical_count, received_at);

-- A lab physician's sign-off: the canonical JSON document that was signed (schema yilian.lab-report/1)
-- and the signature, exactly as reports keep theirs. Never updated.
CREATE TABLE lab_signoffs (
    panel_id TEXT PRIMARY KEY REFERENCES lab_panels (panel_id),
    signer TEXT NOT NULL,
    comment TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature TEXT NOT NULL,
    document TEXT NOT NULL
);

-- One case per critical value, opened with its panel. The register: who was told, who acknowledged
-- (a named person, with the value read back), when, and each escalation.
CREATE TABLE lab_critical_cases (
    case_id TEXT PRIMARY KEY,                -- ULID
    panel_id TEXT NOT NULL REFERENCES lab_panels (panel_id),
    result_seq BIGINT NOT NULL,              -- the result's position in the panel, from 1
    site_id TEXT NOT NULL,                   -- the sending lab's site
    notify_site TEXT NOT NULL,               -- the ordering site, when the hub knows it; else the lab's
    review_pool TEXT,                        -- the lab physicians' pool, told as well
    patient_key TEXT NOT NULL,
    analyte TEXT NOT NULL,
    value_text TEXT NOT NULL,                -- as reported, with its comparator
    unit TEXT NOT NULL,
    rule_name TEXT,                          -- the list entry; NULL: flagged critical by the lab itself
    explanation TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    ack_due_at BIGINT NOT NULL,
    state TEXT NOT NULL,                     -- open | escalated | acknowledged
    escalations BIGINT NOT NULL DEFAULT 0,
    last_escalated_at BIGINT,
    next_escalation_at BIGINT,               -- NULL: acknowledged, or escalated as often as configured
    acked_at BIGINT,
    acked_by TEXT,                           -- the account that recorded the acknowledgement
    ack_name TEXT,                           -- the named person who received the value
    ack_role TEXT,                           -- their role or department, as given
    read_back TEXT                           -- what they read back
);
CREATE INDEX lab_critical_due ON lab_critical_cases (next_escalation_at);
CREATE INDEX lab_critical_by_site ON lab_critical_cases (notify_site, opened_at);
CREATE INDEX lab_critical_by_opened ON lab_critical_cases (opened_at);
CREATE INDEX lab_critical_by_panel ON lab_critical_cases (panel_id);
