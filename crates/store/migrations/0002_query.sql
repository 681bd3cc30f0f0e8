-- Version 2: what QIDO-RS, C-FIND and WADO-RS metadata need, answered from the catalog alone.

ALTER TABLE studies ADD COLUMN study_id TEXT;
ALTER TABLE studies ADD COLUMN referring_physician TEXT;

-- DICOM JSON of each instance's data set with bulk data as references (formats::dicom::Parsed). Kept
-- apart from `instances` so listing instances stays cheap.
CREATE TABLE instance_metadata (
    sop_instance_uid TEXT PRIMARY KEY REFERENCES instances (sop_instance_uid),
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX instance_metadata_by_study ON instance_metadata (study_uid, series_uid);

CREATE INDEX studies_by_date ON studies (study_date, study_uid);
CREATE INDEX studies_by_patient_id ON studies (patient_id);
CREATE INDEX studies_by_accession ON studies (accession_number);
