-- EXPLAIN (ANALYZE, BUFFERS) of the catalog's hot queries on a catalog made by
-- scripts/catalog-scale.sql (see docs/catalog-plans.md). The SQL is the text crates/store sends,
-- with literal parameters (PostgreSQL plans the first executions of a prepared statement with its
-- parameters, as here).
--   psql -h 127.0.0.1 -U postgres -d yilian_explain -f scripts/catalog-plans.sql
\set ON_ERROR_STOP on
\pset pager off

-- Parameters, taken from the data: the patient with the most studies, a large CT study, a busy site,
-- a reading pool, "now" (the newest receipt), a month and a day of study dates.
SELECT patient_id AS pid, issuer, patient_key AS pkey, count(*) AS pid_studies FROM studies
GROUP BY patient_id, issuer, patient_key ORDER BY count(*) DESC LIMIT 1 \gset
SELECT s.study_uid AS ct_study, s.site_id AS site, s.accession_number AS acc
FROM studies s JOIN series se ON se.study_uid = s.study_uid AND se.modality = 'CT'
WHERE s.study_date >= '20230615' ORDER BY s.study_date, s.study_uid LIMIT 1 \gset
SELECT count(*) AS ct_instances FROM instances WHERE study_uid = :'ct_study' \gset
SELECT sop_instance_uid AS sop, series_uid AS ct_series FROM instances WHERE study_uid = :'ct_study' ORDER BY sop_instance_uid LIMIT 1 \gset
SELECT max(last_received_at) + 60000 AS now FROM studies \gset
SELECT pool_id AS pool FROM exams WHERE state = 'queued' GROUP BY pool_id ORDER BY count(*) DESC LIMIT 1 \gset
SELECT count(*) AS queued FROM exams WHERE state = 'queued' \gset
\echo patient :pid (:issuer) with :pid_studies studies; CT study :ct_study with :ct_instances instances; site :site; pool :pool; queued :queued; now :now

\echo
\echo ==== ingest: duplicate check (insert_instance)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT sha256 FROM instances WHERE sop_instance_uid = :'sop';

\echo ==== ingest: the instance row and its metadata (rolled back)
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
INSERT INTO instances (sop_instance_uid, series_uid, study_uid, sop_class_uid, transfer_syntax_uid, instance_number, pixel_rows,
  pixel_columns, number_of_frames, size_bytes, sha256, blob_key, received_at, received_by)
VALUES (:'ct_series' || '.99999', :'ct_series', :'ct_study', '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1', 99999, 512, 512, 1,
  530000, repeat('ab', 32), 'sha256/ab/ab/' || repeat('ab', 32), :now, 'stow.x')
ON CONFLICT (sop_instance_uid) DO NOTHING;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
INSERT INTO studies (study_uid, site_id, patient_key, issuer, patient_id, patient_name, study_date, study_time,
  accession_number, description, state, urgent, first_received_at, last_received_at, study_id, referring_physician)
VALUES (:'ct_study', :'site', :'pkey', :'issuer', :'pid', 'x', '20230615', '120000', 'A', 'd', 'receiving', 0, :now, :now, '1', 'r')
ON CONFLICT (study_uid) DO UPDATE SET last_received_at = excluded.last_received_at WHERE studies.site_id = excluded.site_id;
ROLLBACK;

\echo ==== QIDO studies by PatientID, site scope (technologist)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician,
  (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series,
  (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE s.site_id = :'issuer' AND s.patient_id = :'pid'
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT 100000;

\echo ==== QIDO studies by date range (a month), site scope, limit 100
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician,
  (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series,
  (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE s.site_id = :'site' AND (s.study_date IS NOT NULL AND s.study_date >= '20230601' AND s.study_date <= '20230630')
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT 100;

\echo ==== QIDO studies, no filter, site scope, limit 100: the newest studies of the site
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician,
  (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series,
  (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE s.site_id = :'site'
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT 100;

\echo ==== QIDO studies by date range (a month) and ModalitiesInStudy=CT, clinician scope (signed), limit 100
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician,
  (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series,
  (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE EXISTS (SELECT 1 FROM exams e WHERE e.study_uid = s.study_uid AND e.state = 'signed')
  AND (s.study_date IS NOT NULL AND s.study_date >= '20230601' AND s.study_date <= '20230630')
  AND EXISTS (SELECT 1 FROM series ms WHERE ms.study_uid = s.study_uid AND ms.modality IN ('CT'))
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT 100;

\echo ==== QIDO studies, no filter, reader scope (pools), limit 100: the newest studies of the pool
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician,
  (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series,
  (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE EXISTS (SELECT 1 FROM exams e WHERE e.study_uid = s.study_uid AND e.pool_id IN (:'pool'))
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT 100;

\echo ==== QIDO studies by AccessionNumber, site scope
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician,
  (SELECT COUNT(*) FROM series c WHERE c.study_uid = s.study_uid) AS n_series,
  (SELECT COUNT(*) FROM instances c WHERE c.study_uid = s.study_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE s.site_id = :'site' AND s.accession_number = :'acc'
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT 100000;

\echo ==== QIDO series of a study (StudyInstanceUID), signed scope
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician, se.series_uid, se.modality, se.series_number,
  se.description AS series_description, se.body_part,
  (SELECT COUNT(*) FROM instances c WHERE c.series_uid = se.series_uid) AS n_instances
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
JOIN series se ON se.study_uid = s.study_uid
WHERE EXISTS (SELECT 1 FROM exams e WHERE e.study_uid = s.study_uid AND e.state = 'signed') AND s.study_uid = :'ct_study'
ORDER BY s.study_date DESC, s.study_uid, se.series_number, se.series_uid LIMIT 100000;

\echo ==== QIDO instances of a study, signed scope
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.study_uid, s.patient_name, s.patient_id, s.issuer, p.birth_date, p.sex, s.study_date, s.study_time, s.accession_number,
  s.study_id, s.description, s.referring_physician, se.series_uid, se.modality, se.series_number,
  se.description AS series_description, se.body_part, i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.pixel_rows,
  i.pixel_columns, i.number_of_frames, i.transfer_syntax_uid
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
JOIN series se ON se.study_uid = s.study_uid JOIN instances i ON i.series_uid = se.series_uid
WHERE EXISTS (SELECT 1 FROM exams e WHERE e.study_uid = s.study_uid AND e.state = 'signed') AND s.study_uid = :'ct_study'
ORDER BY s.study_date DESC, s.study_uid, se.series_number, se.series_uid, i.instance_number, i.sop_instance_uid LIMIT 100000;

\echo ==== QIDO patient level by PatientID, site scope
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT s.patient_id, s.issuer, MAX(s.patient_name) AS patient_name, MAX(p.birth_date) AS birth_date, MAX(p.sex) AS sex,
  COUNT(DISTINCT s.study_uid) AS n
FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE s.site_id = :'issuer' AND s.patient_id = :'pid'
GROUP BY s.issuer, s.patient_id ORDER BY s.issuer, s.patient_id LIMIT 100000;

\echo ==== ModalitiesInStudy for matched studies (search::modalities)
SELECT string_agg(quote_literal(study_uid), ', ') AS uids FROM
  (SELECT study_uid FROM studies WHERE study_date >= '20230601' ORDER BY study_date, study_uid LIMIT 100) x \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT DISTINCT study_uid, modality FROM series WHERE modality IS NOT NULL AND study_uid IN (:uids) ORDER BY study_uid, modality;

\echo ==== WADO-RS retrieve: study_instances
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT sop_instance_uid, series_uid, study_uid, sop_class_uid, transfer_syntax_uid, instance_number, pixel_rows, pixel_columns,
  number_of_frames, size_bytes, sha256, blob_key, received_at, received_by
FROM instances WHERE study_uid = :'ct_study' ORDER BY series_uid, instance_number, sop_instance_uid;

\echo ==== WADO-RS metadata of a study
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT m.sop_instance_uid, m.document FROM instance_metadata m JOIN instances i ON i.sop_instance_uid = m.sop_instance_uid
WHERE m.study_uid = :'ct_study' AND (CAST(NULL AS TEXT) IS NULL OR m.series_uid = NULL) AND (CAST(NULL AS TEXT) IS NULL OR m.sop_instance_uid = NULL)
ORDER BY i.series_uid, i.instance_number, i.sop_instance_uid;

\echo ==== study_series
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT series_uid, modality, series_number, description, body_part FROM series WHERE study_uid = :'ct_study' ORDER BY created_at, series_uid;

\echo ==== worklist of a pool
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.exam_id, e.study_uid, e.site_id, e.patient_key, e.modality, e.pool_id, e.priority, e.due_at, e.route_rule, e.route_reason,
  e.state, e.claimed_by, e.lease_until, e.created_at, s.patient_id, s.issuer, s.patient_name, s.description, s.study_date,
  s.first_received_at, e.kind, e.alerts, e.escalated_pool, e.escalated_at, e.escalation_reason, e.review_required,
  e.escalate_next_at, e.awaiting_review, e.drafted_by, e.subspecialty, e.offered_to, e.offered_at, e.offer_until, e.offer_reason
FROM exams e JOIN studies s ON s.study_uid = e.study_uid
WHERE (e.pool_id = :'pool' OR e.escalated_pool = :'pool') AND e.state = 'queued'
ORDER BY e.priority_rank, e.due_at, e.exam_id LIMIT 500;

\echo ==== claim_next (rolled back)
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE exams SET claimed_by = 'reader9', lease_until = :now + 1800000, updated_at = :now, first_claimed_at = COALESCE(first_claimed_at, :now),
  offer_until = NULL
WHERE exam_id = (SELECT exam_id FROM exams WHERE state = 'queued'
  AND (claimed_by IS NULL OR lease_until < :now) AND (pool_id IN (:'pool') OR escalated_pool IN (:'pool'))
  AND (awaiting_review = 0 OR 0 = 1) AND subspecialty IS NULL
  AND (priority_rank = 0 OR offer_until IS NULL OR offer_until < :now OR offered_to = 'reader9')
  ORDER BY priority_rank, CASE WHEN offered_to = 'reader9' AND offer_until >= :now THEN 0 ELSE 1 END, due_at, exam_id LIMIT 1
  FOR UPDATE SKIP LOCKED)
AND state = 'queued' AND (claimed_by IS NULL OR lease_until < :now) RETURNING exam_id;
ROLLBACK;

\echo ==== overdue_exams (escalation sweep)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.exam_id, e.due_at, s.patient_id FROM exams e JOIN studies s ON s.study_uid = e.study_uid
WHERE e.state = 'queued' AND ((e.escalated_at IS NULL AND e.due_at <= :now) OR e.escalate_next_at <= :now)
AND (e.claimed_by IS NULL OR e.lease_until < :now) ORDER BY e.due_at, e.exam_id LIMIT 100;

\echo ==== offer_candidates (offer sweep)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.exam_id, s.patient_id FROM exams e JOIN studies s ON s.study_uid = e.study_uid
WHERE e.state = 'queued' AND (e.claimed_by IS NULL OR e.lease_until < :now)
AND (e.offer_until IS NULL OR e.offer_until < :now)
ORDER BY e.priority_rank, e.due_at, e.exam_id LIMIT 100;

\echo ==== reader_loads (offer sweep, duty board)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
WITH RECURSIVE offered (username) AS (
  SELECT MIN(offered_to) FROM exams
  UNION ALL
  SELECT (SELECT MIN(e.offered_to) FROM exams e WHERE e.offered_to > o.username) FROM offered o
  WHERE o.username IS NOT NULL
)
SELECT username, CAST(SUM(open_items) AS BIGINT) AS open_items, MAX(last_at) AS last_at FROM (
  SELECT claimed_by AS username, CASE WHEN state = 'queued' AND lease_until >= :now THEN 1 ELSE 0 END AS open_items,
         first_claimed_at AS last_at FROM exams WHERE claimed_by IS NOT NULL
  UNION ALL
  SELECT o.username,
         (SELECT COUNT(*) FROM exams e WHERE e.offered_to = o.username AND e.offer_until >= :now
          AND e.state = 'queued' AND (e.claimed_by IS NULL OR e.lease_until < :now)) AS open_items,
         (SELECT MAX(e.offered_at) FROM exams e WHERE e.offered_to = o.username) AS last_at
  FROM offered o WHERE o.username IS NOT NULL
) t GROUP BY username;

\echo ==== worklist_depth (metrics)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT pool_id, priority, COUNT(*) AS n FROM exams WHERE state = 'queued' GROUP BY pool_id, priority ORDER BY pool_id, priority;

\echo ==== studies_to_route (router sweep)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT study_uid FROM studies WHERE state = 'complete' OR (state = 'receiving' AND last_received_at <= :now - 30000)
ORDER BY last_received_at LIMIT 100;

\echo ==== results_of_patient
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.exam_id, s.patient_id, r.report_id, r.document FROM exams e JOIN studies s ON s.study_uid = e.study_uid
JOIN reports r ON r.exam_id = e.exam_id AND r.status = 'final'
WHERE e.patient_key = :'pkey' AND r.version = (SELECT MAX(r2.version) FROM reports r2
WHERE r2.exam_id = e.exam_id AND r2.status = 'final') ORDER BY r.signed_at DESC, r.version DESC LIMIT 200;

\echo ==== reported_patient_keys_by_prefix (FHIR Patient/{id} prefix, 8 hex)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT DISTINCT e.patient_key FROM exams e JOIN reports r ON r.exam_id = e.exam_id AND r.status = 'final'
WHERE e.patient_key >= substr(:'pkey', 1, 8) AND e.patient_key < substr(:'pkey', 1, 8) || 'g' ORDER BY e.patient_key;

\echo ==== patient index: keys_linked_to_id, ids_linked_to_key, patient_key_of
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT patient_key FROM patient_links WHERE issuer = :'issuer' AND patient_id = :'pid' ORDER BY patient_key;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT issuer, patient_id FROM patient_links WHERE patient_key = :'pkey' ORDER BY issuer, patient_id LIMIT 64;

\echo ==== FHIR lab search by patient (published_panels)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT p.panel_id, p.received_at FROM lab_panels p
WHERE p.state IN ('released', 'auto_released') AND p.patient_key IN (:'pkey')
ORDER BY p.received_at DESC, p.panel_id DESC LIMIT 100;

\echo ==== FHIR lab search by patient and code and date (published_panels)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT p.panel_id, p.received_at FROM lab_panels p
WHERE p.state IN ('released', 'auto_released') AND p.patient_key IN (:'pkey')
AND EXISTS (SELECT 1 FROM lab_results r WHERE r.panel_id = p.panel_id AND (r.code IN ('A1') OR r.loinc IN ('719-7')))
AND p.collected_at >= 1546300800000 AND p.collected_at < :now
ORDER BY p.received_at DESC, p.panel_id DESC LIMIT 100;

\echo ==== FHIR lab search by order number (published_panels)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT p.panel_id, p.received_at FROM lab_panels p
WHERE p.state IN ('released', 'auto_released') AND (p.filler_order = 'FO1000' OR p.placer_order = 'FO1000')
ORDER BY p.received_at DESC, p.panel_id DESC LIMIT 100;

\echo ==== FHIR lab patient by identifier (lab_keys_by_identifier)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT DISTINCT patient_key FROM lab_panels WHERE patient_id = :'pid' AND state IN ('released', 'auto_released')
AND issuer IN (:'issuer') ORDER BY patient_key;

\echo ==== notifications_for (first poll, then from a recent cursor)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT notification_id, at, kind, exam_id, pool_id FROM notifications n WHERE notification_id > ''
AND ((pool_id IN (:'pool') AND addressed = 0) OR EXISTS (SELECT 1 FROM notification_recipients r
  WHERE r.notification_id = n.notification_id AND r.username = 'reader1'))
ORDER BY notification_id LIMIT 100;
SELECT notification_id AS cursor FROM notifications ORDER BY notification_id DESC OFFSET 200 LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT notification_id, at, kind, exam_id, pool_id FROM notifications n WHERE notification_id > :'cursor'
AND ((pool_id IN (:'pool') AND addressed = 0) OR EXISTS (SELECT 1 FROM notification_recipients r
  WHERE r.notification_id = n.notification_id AND r.username = 'reader1'))
ORDER BY notification_id LIMIT 100;

\echo ==== pending_webhooks
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT notification_id, at, kind, exam_id FROM notifications WHERE webhook_state = 'pending' ORDER BY notification_id LIMIT 100;

\echo ==== audit export by time range (one day, first page of 1000)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT seq, hash, at, actor, action, resource_type, resource_id, patient_key, outcome, detail
FROM audit_events WHERE at >= 1686787200000 AND at < 1686873600000 ORDER BY at, seq, event_id LIMIT 1000;

\echo ==== audit_events (latest)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT at, actor, action, resource_type, resource_id, patient_key, outcome, detail FROM audit_events
ORDER BY at DESC, event_id DESC LIMIT 100;

\echo ==== audit verify page
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT seq, prev_hash, hash, event_id FROM audit_events WHERE seq >= 1000000 ORDER BY seq LIMIT 5000;

\echo ==== blob repair: referenced_blob_keys of one shard (sha256/ab/)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT blob_key FROM instances WHERE blob_key >= 'sha256/ab/' AND blob_key < 'sha256/ac/'
UNION SELECT source_blob_key FROM ecg_records WHERE source_blob_key >= 'sha256/ab/' AND source_blob_key < 'sha256/ac/'
UNION SELECT blob_key FROM lab_messages WHERE blob_key >= 'sha256/ab/' AND blob_key < 'sha256/ac/';

\echo ==== turnaround_rows (a month)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.pool_id, e.priority, s.first_received_at, e.created_at FROM exams e JOIN studies s ON s.study_uid = e.study_uid
WHERE e.created_at >= 1685577600000 AND e.created_at < 1688169600000 ORDER BY e.created_at, e.exam_id LIMIT 10000;

\echo ==== pool_turnaround (metrics)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.pool_id,
  CAST(SUM(CASE WHEN e.sla_breached = 1 OR (e.state = 'queued' AND e.due_at < :now) THEN 1 ELSE 0 END) AS BIGINT) AS breaches,
  CAST(SUM(CASE WHEN e.signed_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS signed,
  CAST(SUM(CASE WHEN e.signed_at IS NOT NULL THEN e.signed_at - s.first_received_at ELSE 0 END) AS BIGINT) AS took_ms
FROM exams e JOIN studies s ON s.study_uid = e.study_uid GROUP BY e.pool_id ORDER BY e.pool_id;

\echo ==== generic plans (what a prepared statement may switch to after five executions)
SET plan_cache_mode = force_generic_plan;
PREPARE dup(text) AS SELECT sha256 FROM instances WHERE sop_instance_uid = $1;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE dup(:'sop');
PREPARE si(text) AS SELECT sop_instance_uid, blob_key FROM instances WHERE study_uid = $1 ORDER BY series_uid, instance_number, sop_instance_uid;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE si(:'ct_study');
PREPARE site_month(text, text, text, bigint) AS
SELECT s.study_uid FROM studies s LEFT JOIN patient_ids p ON p.issuer = s.issuer AND p.patient_id = s.patient_id
WHERE s.site_id = $1 AND (s.study_date IS NOT NULL AND s.study_date >= $2 AND s.study_date <= $3)
ORDER BY s.study_date DESC, s.study_time DESC, s.study_uid LIMIT $4;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE site_month(:'site', '20230601', '20230630', 100);
PREPARE wl(text) AS SELECT e.exam_id FROM exams e JOIN studies s ON s.study_uid = e.study_uid
WHERE (e.pool_id = $1 OR e.escalated_pool = $1) AND e.state = 'queued' ORDER BY e.priority_rank, e.due_at, e.exam_id LIMIT 500;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE wl(:'pool');
PREPARE trail(bigint, bigint, bigint) AS SELECT seq, hash, at FROM audit_events WHERE at >= $1 AND at < $2 ORDER BY at, seq, event_id LIMIT $3;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE trail(1686787200000, 1686873600000, 1000);
RESET plan_cache_mode;
