-- Version 15: structured reports from templates, amendments and revocation (作废).
-- A report's text is kept per template section (JSON array of {key, label, text} in template order);
-- `findings` and `impression` stay filled (derived from the sections) for the readers of version 1.
ALTER TABLE reports ADD COLUMN template TEXT;
ALTER TABLE reports ADD COLUMN sections TEXT;
-- An amendment is a new `final` row of the same exam with the next version (its own report id);
-- nothing is updated. A revocation is a signed record of its own; final rows are still never updated.
-- One revocation per exam: a revoked result is never amended (and never revoked twice).
CREATE TABLE report_revocations (
    revocation_id TEXT PRIMARY KEY,          -- ULID
    report_id TEXT NOT NULL REFERENCES reports (report_id),
    exam_id TEXT NOT NULL REFERENCES exams (exam_id),
    version BIGINT NOT NULL,                 -- the revoked (latest) version
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature TEXT NOT NULL,                 -- base64 over the canonical revocation document
    document TEXT NOT NULL,                  -- canonical (RFC 8785) `yilian.report-revocation.v1` JSON
    countersignature TEXT                    -- the hub's countersignature (JSON), as on reports
);
CREATE UNIQUE INDEX report_revocations_one_per_exam ON report_revocations (exam_id);
CREATE UNIQUE INDEX report_revocations_by_report ON report_revocations (report_id);
