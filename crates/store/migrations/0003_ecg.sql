-- Version 3: ECG records (one row per stored ECG waveform instance) and escalation of overdue exams.

-- What the hub read from an ECG when it was stored: enough to list a patient's ECGs, find the prior
-- and show measurements without opening the blob. The trace itself stays in the DICOM instance.
CREATE TABLE ecg_records (
    sop_instance_uid TEXT PRIMARY KEY REFERENCES instances (sop_instance_uid),
    study_uid TEXT NOT NULL,
    patient_key TEXT NOT NULL,
    site_id TEXT NOT NULL,
    acquired_at TEXT,                        -- the device's local time, ISO 8601 without zone
    received_at BIGINT NOT NULL,
    source_format TEXT NOT NULL,             -- dicom-waveform | hl7-aecg | scp-ecg
    source_blob_key TEXT,                    -- the uploaded original, when it was not DICOM
    source_sha256 TEXT,
    sample_rate_hz DOUBLE PRECISION NOT NULL,
    samples_per_lead BIGINT NOT NULL,
    leads TEXT NOT NULL,                     -- lead labels, comma separated
    heart_rate_bpm DOUBLE PRECISION,         -- the hub's measurement
    alerts TEXT NOT NULL,                    -- JSON array of alert texts (policy::ecg_alerts)
    summary TEXT NOT NULL                    -- JSON: device, device measurements, interpretation, the hub's analysis
);
CREATE INDEX ecg_by_patient ON ecg_records (patient_key, acquired_at);
CREATE INDEX ecg_by_study ON ecg_records (study_uid);

ALTER TABLE exams ADD COLUMN alerts TEXT;            -- why the data made the exam stat (JSON array), if it did
ALTER TABLE exams ADD COLUMN escalated_pool TEXT;    -- a higher-tier pool that also sees the exam
ALTER TABLE exams ADD COLUMN escalated_at BIGINT;
ALTER TABLE exams ADD COLUMN escalation_reason TEXT;
CREATE INDEX exams_overdue ON exams (state, escalated_at, due_at);
CREATE INDEX exams_escalated_pool ON exams (escalated_pool, state);
