-- Version 20: indexes for a catalog of 100 million instances (docs/catalog-plans.md).
-- A site's technologists search their own studies (QIDO/C-FIND scope `s.site_id = $1`) newest first:
-- `ORDER BY study_date DESC, study_time DESC, study_uid`. With only studies_by_date (study_date,
-- study_uid) that walked every site's studies of the date range (or of all time, with no date key)
-- and kept one in a hundred; this index gives the site's rows already in the answer's order, so the
-- scan stops at the LIMIT. Portable: descending key columns work on SQLite and PostgreSQL alike.
CREATE INDEX IF NOT EXISTS studies_by_site_date ON studies (site_id, study_date DESC, study_time DESC, study_uid);

-- Readers' loads (duty board, offer sweep): the readers holding a lease, found without reading the
-- exams that nobody holds (claimed_by is cleared when the exam is signed, submitted or released),
CREATE INDEX IF NOT EXISTS exams_claimed_by ON exams (claimed_by) WHERE claimed_by IS NOT NULL;
-- and each reader's latest offer: offered_to stays on an exam after it is signed, so the readers
-- ever offered an exam are walked one name at a time and their latest offer read from the end of
-- their range, instead of aggregating every exam ever offered.
CREATE INDEX IF NOT EXISTS exams_offered_at ON exams (offered_to, offered_at);
