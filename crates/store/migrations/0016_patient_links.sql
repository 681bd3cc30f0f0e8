-- Version 16: the alliance patient index (患者主索引). Every site identifier a message gives a patient
-- (DICOM PatientID and Other Patient IDs, every HL7 PID-3 repetition, every FHIR Patient.identifier),
-- linked to the patient key the message was filed under: the keyed hash of a resident ID when one was
-- among them, else of the site identifier. A site identifier linked to two resident-ID keys (a number
-- reused or mistyped at the site) is a conflict the look-up refuses to guess about. Resident IDs
-- themselves are never written here: their key is their hash. Rows are only added (and their
-- last_seen_at moved); a link is never rewritten to another key.
CREATE TABLE patient_links (
    issuer        TEXT NOT NULL,          -- IssuerOfPatientID / assigning authority (the site's issuer)
    patient_id    TEXT NOT NULL,
    patient_key   TEXT NOT NULL,
    site_id       TEXT NOT NULL,          -- the site whose message made the link
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    PRIMARY KEY (issuer, patient_id, patient_key)
);
CREATE INDEX patient_links_by_key ON patient_links (patient_key);

-- Every identifier the catalog already knows, linked to the key its rows were filed under.
INSERT INTO patient_links (issuer, patient_id, patient_key, site_id, first_seen_at, last_seen_at)
SELECT issuer, patient_id, patient_key, site_id, updated_at, updated_at FROM patient_ids
-- (an 18-character identifier may be a resident ID: not copied; look-ups by it go through its hash)
WHERE length(patient_id) <> 18;
