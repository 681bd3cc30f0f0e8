-- Version 9: lab results (检验) in. One row per received lab message (HL7 v2 ORU^R01 or FHIR R4
-- Bundle), one per panel it carried (OBR group / DiagnosticReport), one per result (OBX / Observation).
-- A message's rows commit in one transaction with their audit rows; the original bytes are a
-- content-addressed blob. Rows are never updated except `lab_panels.superseded_by` (set once, when a
-- later report of the same order arrives) and, later, `lab_panels.state` (review and release).

-- Duplicate detection: a sender's control ID is taken once. The same ID with the same bytes is a
-- repeat (acknowledged, nothing written); with other bytes it is refused.
CREATE TABLE lab_messages (
    message_id TEXT PRIMARY KEY,             -- ULID
    source TEXT NOT NULL,                    -- hl7v2 | fhir-r4
    sending_facility TEXT NOT NULL,          -- the [[lab.senders]] facility the message came from
    control_id TEXT NOT NULL,                -- HL7 MSH-10; FHIR Bundle id
    site_id TEXT NOT NULL,                   -- the sender's site
    version TEXT NOT NULL,                   -- HL7 MSH-12, or R4
    sha256 TEXT NOT NULL,                    -- of the bytes as received
    size_bytes BIGINT NOT NULL,
    blob_key TEXT NOT NULL,                  -- the original message: sha256/ab/cd/<sha256>
    received_at BIGINT NOT NULL,
    received_by TEXT NOT NULL,               -- user, or lab.<facility> for MLLP senders
    panel_count BIGINT NOT NULL,
    outcome TEXT NOT NULL,                   -- accepted (refused messages are audited, not stored)
    UNIQUE (source, sending_facility, control_id)
);

CREATE TABLE lab_panels (
    panel_id TEXT PRIMARY KEY,               -- ULID
    message_id TEXT NOT NULL REFERENCES lab_messages (message_id),
    seq BIGINT NOT NULL,                     -- position in the message, from 1
    source TEXT NOT NULL,                    -- hl7v2 | fhir-r4
    version TEXT NOT NULL,
    site_id TEXT NOT NULL,                   -- the sending site (owner of the panel)
    sending_facility TEXT NOT NULL,          -- the configured sender; scope of the order numbers
    performing_lab TEXT,                     -- as sent: MSH-4 / DiagnosticReport.performer
    ordering_site TEXT,                      -- as sent: ORC-21/ORC-17 / ServiceRequest.requester
    ordering_provider TEXT,                  -- OBR-16: id^name as sent
    patient_key TEXT NOT NULL,               -- alliance key (keyed hash), as for imaging
    issuer TEXT NOT NULL,                    -- assigning authority of the identifier used
    patient_id TEXT NOT NULL,
    patient_name TEXT,
    birth_date TEXT,
    sex TEXT,
    placer_order TEXT,                       -- OBR-2 / ServiceRequest identifier
    filler_order TEXT,                       -- OBR-3 / DiagnosticReport identifier
    service_code TEXT NOT NULL,              -- OBR-4 / DiagnosticReport.code
    service_display TEXT,
    service_system TEXT,
    service_loinc TEXT,                      -- as sent when LOINC, else from [[lab.loinc]]
    specimen_code TEXT,
    specimen_display TEXT,
    specimen_system TEXT,
    collected_at BIGINT,                     -- instants (the alliance's offset when the lab sent none)
    specimen_received_at BIGINT,
    reported_at BIGINT,
    collected_text TEXT,                     -- the same times as sent: YYYYMMDDHHMMSS[+ZZZZ]
    specimen_received_text TEXT,
    reported_text TEXT,
    received_at BIGINT NOT NULL,             -- by the hub
    status TEXT NOT NULL,                    -- registered | partial | preliminary | final | corrected | cancelled | entered-in-error
    state TEXT NOT NULL,                     -- received (later: awaiting_review, released)
    supersedes TEXT,                         -- the earlier report of the same order and service
    superseded_by TEXT,                      -- set once, when a later report arrives
    notes TEXT NOT NULL                      -- JSON array: what the parser tolerated, how the hub filed it
);
CREATE INDEX lab_panels_by_patient ON lab_panels (patient_key, received_at);
CREATE INDEX lab_panels_by_filler ON lab_panels (sending_facility, filler_order);
CREATE INDEX lab_panels_by_placer ON lab_panels (sending_facility, placer_order);
CREATE INDEX lab_panels_by_message ON lab_panels (message_id);
CREATE INDEX lab_panels_by_state ON lab_panels (state, received_at);

CREATE TABLE lab_results (
    panel_id TEXT NOT NULL REFERENCES lab_panels (panel_id),
    seq BIGINT NOT NULL,                     -- position in the panel, from 1
    set_id BIGINT,                           -- OBX-1
    code TEXT NOT NULL,                      -- the analyte as the lab codes it
    code_display TEXT,
    code_system TEXT,
    other_codes TEXT NOT NULL,               -- JSON array of {code, display, system}
    loinc TEXT,
    loinc_source TEXT,                       -- sent | mapped (NULL: no LOINC)
    value_kind TEXT NOT NULL,                -- numeric | coded | text | absent
    value_num DOUBLE PRECISION,              -- numeric: the number (for comparisons)
    value_decimal TEXT,                      -- numeric: the decimal as sent ("6.80")
    comparator TEXT,                         -- < <= > >=
    unit TEXT,
    unit_display TEXT,
    unit_system TEXT,
    value_code TEXT,                         -- coded
    value_code_system TEXT,
    value_text TEXT,                         -- text; coded: the display
    ref_low DOUBLE PRECISION,
    ref_high DOUBLE PRECISION,
    ref_text TEXT,
    flags TEXT NOT NULL,                     -- JSON array of OBX-8 / interpretation codes
    status TEXT NOT NULL,                    -- registered | preliminary | final | corrected | cancelled | entered-in-error
    observed_at BIGINT,
    observed_text TEXT,
    PRIMARY KEY (panel_id, seq)
);
CREATE INDEX lab_results_by_loinc ON lab_results (loinc);
