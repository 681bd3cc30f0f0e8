-- Yilian catalog, version 1. One migration story for SQLite and PostgreSQL: only portable SQL
-- (TEXT, BIGINT, ON CONFLICT, no engine-specific types). Times are epoch milliseconds (BIGINT).

CREATE TABLE patients (
    patient_key TEXT PRIMARY KEY,            -- alliance key: HMAC of resident ID or local ID
    created_at BIGINT NOT NULL
);

CREATE TABLE patient_ids (
    issuer TEXT NOT NULL,                    -- IssuerOfPatientID / assigning authority
    patient_id TEXT NOT NULL,
    patient_key TEXT NOT NULL REFERENCES patients (patient_key),
    site_id TEXT NOT NULL,
    patient_name TEXT,
    birth_date TEXT,
    sex TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, patient_id)
);
CREATE INDEX patient_ids_by_key ON patient_ids (patient_key);

CREATE TABLE studies (
    study_uid TEXT PRIMARY KEY,
    site_id TEXT NOT NULL,                   -- the uploading site owns the study
    patient_key TEXT NOT NULL REFERENCES patients (patient_key),
    issuer TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    patient_name TEXT,
    study_date TEXT,
    study_time TEXT,
    accession_number TEXT,
    description TEXT,
    state TEXT NOT NULL,                     -- receiving | complete | routed | unroutable
    urgent BIGINT NOT NULL DEFAULT 0,
    urgent_reason TEXT,
    first_received_at BIGINT NOT NULL,
    last_received_at BIGINT NOT NULL
);
CREATE INDEX studies_to_route ON studies (state, last_received_at);
CREATE INDEX studies_by_patient ON studies (patient_key);

CREATE TABLE series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    modality TEXT,
    series_number BIGINT,
    description TEXT,
    body_part TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX series_by_study ON series (study_uid);

CREATE TABLE instances (
    sop_instance_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series (series_uid),
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    instance_number BIGINT,
    pixel_rows BIGINT,
    pixel_columns BIGINT,
    number_of_frames BIGINT,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,                    -- of the original bytes, as received
    blob_key TEXT NOT NULL,                  -- sha256/ab/cd/<sha256>
    received_at BIGINT NOT NULL,
    received_by TEXT NOT NULL
);
CREATE INDEX instances_by_study ON instances (study_uid);
CREATE INDEX instances_by_series ON instances (series_uid);

CREATE TABLE exams (
    exam_id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL UNIQUE REFERENCES studies (study_uid),
    site_id TEXT NOT NULL,
    patient_key TEXT NOT NULL,
    kind TEXT NOT NULL,                      -- imaging (ecg, lab later)
    modality TEXT NOT NULL,
    pool_id TEXT NOT NULL,
    priority TEXT NOT NULL,
    priority_rank BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    route_rule TEXT NOT NULL,
    route_reason TEXT NOT NULL,              -- the policy's explanation, for people
    state TEXT NOT NULL,                     -- queued | signed
    claimed_by TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX exams_worklist ON exams (pool_id, state, priority_rank, due_at);
CREATE INDEX exams_by_patient ON exams (patient_key);

CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    exam_id TEXT NOT NULL REFERENCES exams (exam_id),
    version BIGINT NOT NULL,
    status TEXT NOT NULL,                    -- draft | final; final rows are never updated
    findings TEXT NOT NULL,
    impression TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    signed_at BIGINT,
    key_id TEXT,
    algorithm TEXT,
    signature TEXT,                          -- base64 over the canonical document
    document TEXT                            -- the canonical (RFC 8785) report JSON that was signed
);
CREATE UNIQUE INDEX reports_one_per_status ON reports (exam_id, version, status);

CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,             -- SHA-256 of the token; the token itself is never stored
    username TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE audit_events (
    event_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    patient_key TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit_events (at);
