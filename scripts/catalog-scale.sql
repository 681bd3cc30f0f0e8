-- Generates a large synthetic Yilian catalog on PostgreSQL, for checking query plans at scale
-- (docs/catalog-plans.md). Run on an EMPTY scratch database that already has the migrations
-- (crates/store/migrations/*.sql, in order); scripts/catalog-scale.sh does both:
--
--   psql -h 127.0.0.1 -U postgres -d yilian_explain -v instances=10000000 -f scripts/catalog-scale.sql
--
-- Shape (all derived from :instances):
--   * 100 sites; a patient has a home site (80 % of their studies) and visits others;
--   * a study's kind decides its size: 30 % ECG (1 instance), 40 % DX/CR (1-3), 15 % US (5-40),
--     10 % CT (50-500), 5 % MR (100-400): about 44 instances per study on average, ~10 per series;
--   * patients: one per 4 studies, skewed (random()^3) so some patients have many studies;
--   * study dates spread evenly over 7 years (2019-01-01 .. 2025-12-31, the last days "now");
--   * every study routed to an exam; all but the newest ~0.5 % signed with one final report
--     (2 % have an amendment: a second final version); the rest queued, some claimed/escalated;
--   * one ingest audit event per instance plus claim and sign events per exam (hash-chain columns
--     filled with realistic widths);
--   * notifications for 5 % of exams (webhook sent, a handful pending);
--   * lab: one message and one panel per 2 studies, 6 results per panel, all published;
--   * instance_metadata documents are short stand-ins (real ones are 2-10 kB and TOASTed: the plan
--     is the same, the bytes read per matched row are not).
-- Secondary indexes are dropped for the load and re-created from their own definitions after it;
-- foreign-key triggers are off during the load (session_replication_role = replica).

\set ON_ERROR_STOP on
\if :{?instances}
\else
\set instances 1000000
\endif
\timing on

SET maintenance_work_mem = '1GB';
SET work_mem = '256MB';
SET synchronous_commit = off;
SET session_replication_role = replica;

-- The secondary indexes the migrations made, to re-create after the load.
DROP TABLE IF EXISTS scale_saved_indexes;
CREATE TABLE scale_saved_indexes AS
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname);
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT indexname FROM scale_saved_indexes LOOP
    EXECUTE format('DROP INDEX %I', r.indexname);
  END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Plan of the catalog: studies with their kind and size.
-- ---------------------------------------------------------------------------------------------
SELECT (:instances / 44)::bigint AS n_studies \gset
SELECT greatest(1, :n_studies / 4)::bigint AS n_patients \gset
\echo studies :n_studies patients :n_patients

DROP TABLE IF EXISTS scale_studies;
CREATE UNLOGGED TABLE scale_studies AS
SELECT s,
       k.kind,
       CASE k.kind WHEN 'ECG' THEN 1
                   WHEN 'DX' THEN 1 + (hashint4(s::int * 7) & 2147483647) % 3
                   WHEN 'US' THEN 5 + (hashint4(s::int * 7) & 2147483647) % 36
                   WHEN 'CT' THEN 50 + (hashint4(s::int * 7) & 2147483647) % 451
                   ELSE 100 + (hashint4(s::int * 7) & 2147483647) % 301 END AS n_inst,
       p AS patient,
       CASE WHEN (hashint4(s::int * 13) & 2147483647) % 10 < 8 THEN p % 100
            ELSE (hashint4(s::int * 17) & 2147483647) % 100 END AS site,
       -- 7 years of milliseconds, in study order (newest last)
       1546300800000::bigint + (s * (220838400000::bigint / :n_studies)) AS at
FROM generate_series(1, :n_studies) AS s
CROSS JOIN LATERAL (SELECT CASE WHEN r < 30 THEN 'ECG' WHEN r < 70 THEN 'DX' WHEN r < 85 THEN 'US'
                                WHEN r < 95 THEN 'CT' ELSE 'MR' END AS kind
                    FROM (SELECT (hashint4(s::int * 3) & 2147483647) % 100 AS r) x) k
CROSS JOIN LATERAL (SELECT 1 + floor(:n_patients * power(((hashint4(s::int * 5) & 2147483647) % 1000000) / 1000000.0, 3))::bigint AS p) pp;

-- Per-study columns: UIDs, patient identifiers, dates.
DROP TABLE IF EXISTS scale_studies2;
CREATE UNLOGGED TABLE scale_studies2 AS
SELECT s, kind, n_inst, patient, site, at,
       greatest(1, CASE WHEN kind IN ('CT', 'MR', 'US') THEN n_inst / 10 ELSE 1 END) AS n_series,
       format('1.2.156.112605.%s.%s', site, 1000000000 + s) AS study_uid,
       format('site%s', lpad(site::text, 3, '0')) AS site_id,
       md5('patient' || patient) || md5('key' || patient) AS patient_key,
       format('site%s', lpad(site::text, 3, '0')) AS issuer,
       format('P%s', lpad((patient * 7 + site)::text, 9, '0')) AS patient_id,
       format('Pat^%s', patient) AS patient_name,
       to_char(to_timestamp(at / 1000) AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') AS study_date,
       to_char(to_timestamp(at / 1000) AT TIME ZONE 'Asia/Shanghai', 'HH24MISS') AS study_time,
       format('A%s%s', lpad(site::text, 3, '0'), lpad(s::text, 10, '0')) AS accession
FROM scale_studies;
DROP TABLE scale_studies;
ALTER TABLE scale_studies2 RENAME TO scale_studies;
SELECT max(s) AS max_s FROM scale_studies \gset
-- The newest ~0.5 % are still queued (the live worklist); 20 studies are still arriving.
SELECT (:max_s - greatest(50, :max_s / 200))::bigint AS queued_from \gset
SELECT (:max_s - 20)::bigint AS receiving_from \gset

-- ---------------------------------------------------------------------------------------------
-- Patients and their site identifiers.
-- ---------------------------------------------------------------------------------------------
INSERT INTO patients (patient_key, created_at)
SELECT patient_key, min(at) FROM scale_studies GROUP BY patient_key;

INSERT INTO patient_ids (issuer, patient_id, patient_key, site_id, patient_name, birth_date, sex, updated_at)
SELECT DISTINCT ON (issuer, patient_id) issuer, patient_id, patient_key, site_id, patient_name,
       to_char(date '1940-01-01' + (patient % 25000)::int, 'YYYYMMDD'), CASE WHEN patient % 2 = 0 THEN 'F' ELSE 'M' END, at
FROM scale_studies ORDER BY issuer, patient_id, at DESC;

INSERT INTO patient_links (issuer, patient_id, patient_key, site_id, first_seen_at, last_seen_at)
SELECT issuer, patient_id, patient_key, site_id, updated_at, updated_at FROM patient_ids;

-- ---------------------------------------------------------------------------------------------
-- Studies, series, instances, metadata, ECG records.
-- ---------------------------------------------------------------------------------------------
INSERT INTO studies (study_uid, site_id, patient_key, issuer, patient_id, patient_name, study_date, study_time,
                     accession_number, description, state, urgent, urgent_reason, first_received_at, last_received_at,
                     study_id, referring_physician)
SELECT study_uid, site_id, patient_key, issuer, patient_id, patient_name, study_date, study_time, accession,
       kind || ' examination',
       CASE WHEN s >= :receiving_from THEN 'receiving' ELSE 'routed' END,
       CASE WHEN s % 50 = 0 THEN 1 ELSE 0 END, CASE WHEN s % 50 = 0 THEN 'stat order' END,
       at, at + n_inst * 200, (s % 100000)::text, 'Ref^Doctor'
FROM scale_studies;

DROP TABLE IF EXISTS scale_series;
CREATE UNLOGGED TABLE scale_series AS
SELECT st.s, st.study_uid, st.kind, st.at, k,
       st.study_uid || '.' || k AS series_uid,
       -- instances of this series: the study's instances split evenly, the remainder to the first
       st.n_inst / st.n_series + CASE WHEN k <= st.n_inst % st.n_series THEN 1 ELSE 0 END AS n
FROM scale_studies st CROSS JOIN LATERAL generate_series(1, st.n_series) AS k;

INSERT INTO series (series_uid, study_uid, modality, series_number, description, body_part, created_at)
SELECT series_uid, study_uid, kind, k, kind || ' series ' || k,
       CASE kind WHEN 'ECG' THEN NULL WHEN 'DX' THEN 'CHEST' ELSE 'ABDOMEN' END, at
FROM scale_series;

INSERT INTO instances (sop_instance_uid, series_uid, study_uid, sop_class_uid, transfer_syntax_uid, instance_number,
                       pixel_rows, pixel_columns, number_of_frames, size_bytes, sha256, blob_key, received_at, received_by)
SELECT se.series_uid || '.' || j,
       se.series_uid, se.study_uid,
       CASE se.kind WHEN 'ECG' THEN '1.2.840.10008.5.1.4.1.1.9.1.1' WHEN 'CT' THEN '1.2.840.10008.5.1.4.1.1.2'
                    WHEN 'MR' THEN '1.2.840.10008.5.1.4.1.1.4' WHEN 'US' THEN '1.2.840.10008.5.1.4.1.1.6.1'
                    ELSE '1.2.840.10008.5.1.4.1.1.1.1' END,
       '1.2.840.10008.1.2.1', j,
       CASE WHEN se.kind = 'ECG' THEN NULL ELSE 512 END, CASE WHEN se.kind = 'ECG' THEN NULL ELSE 512 END, 1,
       530000, h.h, 'sha256/' || substr(h.h, 1, 2) || '/' || substr(h.h, 3, 2) || '/' || h.h,
       se.at + j * 200, 'stow.' || split_part(se.study_uid, '.', 5)
FROM scale_series se
CROSS JOIN LATERAL generate_series(1, se.n) AS j
CROSS JOIN LATERAL (SELECT md5(se.series_uid || '/' || j) || md5(j || '/' || se.series_uid) AS h) h;

INSERT INTO instance_metadata (sop_instance_uid, study_uid, series_uid, document)
SELECT sop_instance_uid, study_uid, series_uid,
       '{"00080018":{"vr":"UI","Value":["' || sop_instance_uid || '"]},"00200013":{"vr":"IS","Value":[' || instance_number || ']}}'
FROM instances;

INSERT INTO ecg_records (sop_instance_uid, study_uid, patient_key, site_id, acquired_at, received_at, source_format,
                         source_blob_key, source_sha256, sample_rate_hz, samples_per_lead, leads, heart_rate_bpm, alerts, summary)
SELECT i.sop_instance_uid, i.study_uid, st.patient_key, st.site_id,
       to_char(to_timestamp(st.at / 1000) AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD"T"HH24:MI:SS'), i.received_at,
       'dicom-waveform', NULL, NULL, 500, 5000, 'I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6', 60 + st.s % 40, '[]', '{}'
FROM instances i JOIN scale_studies st ON st.study_uid = i.study_uid
WHERE st.kind = 'ECG';

-- ---------------------------------------------------------------------------------------------
-- Exams, reports, notifications.
-- ---------------------------------------------------------------------------------------------
INSERT INTO exams (exam_id, study_uid, site_id, patient_key, kind, modality, pool_id, priority, priority_rank, due_at,
                   route_rule, route_reason, state, claimed_by, lease_until, created_at, updated_at, alerts,
                   escalated_pool, escalated_at, escalation_reason, review_required, escalate_next_at,
                   first_claimed_at, signed_at, published_at, sla_breached, awaiting_review, drafted_by,
                   subspecialty, offered_to, offered_at, offer_until, offer_reason)
SELECT upper(substr(md5('exam' || s), 1, 26)), study_uid, site_id, patient_key,
       CASE WHEN kind = 'ECG' THEN 'ecg' ELSE 'imaging' END, kind,
       lower(kind) || '-region' || (site / 10), pool_priority, rank, at + 3600000 * (1 + rank * 23),
       'rule-' || lower(kind), 'routed by modality and region',
       CASE WHEN s >= :queued_from THEN 'queued' ELSE 'signed' END,
       -- a third of the queue is claimed (leases in the future)
       CASE WHEN s >= :queued_from AND s % 3 = 0 THEN 'reader' || (s % 40) END,
       CASE WHEN s >= :queued_from AND s % 3 = 0 THEN at + 1800000 END,
       at + 60000, at + 60000, NULL,
       CASE WHEN s % 20 = 0 THEN 'senior-region' || (site / 10) END,
       CASE WHEN s % 20 = 0 THEN at + 7200000 END,
       CASE WHEN s % 20 = 0 THEN 'overdue' END,
       CASE WHEN s % 10 = 0 THEN 1 ELSE 0 END, NULL,
       CASE WHEN s < :queued_from OR s % 3 = 0 THEN at + 600000 END,
       CASE WHEN s < :queued_from THEN at + 3000000 END,
       CASE WHEN s < :queued_from THEN at + 3000000 END,
       CASE WHEN s < :queued_from AND s % 20 = 0 THEN 1 ELSE 0 END, 0, NULL, NULL,
       CASE WHEN s % 4 = 0 THEN 'reader' || (s % 40) END,
       CASE WHEN s % 4 = 0 THEN at + 300000 END,
       CASE WHEN s % 4 = 0 THEN at + 900000 END,
       CASE WHEN s % 4 = 0 THEN 'least loaded' END
FROM (SELECT st.*, CASE WHEN s % 50 = 0 THEN 'stat' WHEN s % 7 = 0 THEN 'urgent' ELSE 'routine' END AS pool_priority,
             CASE WHEN s % 50 = 0 THEN 0 WHEN s % 7 = 0 THEN 1 ELSE 2 END AS rank
      FROM scale_studies st WHERE s < :receiving_from) x;

INSERT INTO reports (report_id, exam_id, version, status, findings, impression, author, created_at, updated_at,
                     signed_at, key_id, algorithm, signature, document, template, sections, countersignature)
SELECT upper(substr(md5('report' || s || '/' || v), 1, 26)), upper(substr(md5('exam' || s), 1, 26)), v, 'final',
       repeat('Findings of the examination. ', 8), 'No acute abnormality.', 'reader' || (s % 40),
       at + 2000000, at + 3000000 + (v - 1) * 86400000, at + 3000000 + (v - 1) * 86400000,
       'sm2:reader' || (s % 40), 'SM2', encode(sha256(('sig' || s)::bytea), 'base64') || encode(sha256(('sig2' || s)::bytea), 'base64'),
       repeat('{"canonical":"report document"}', 30), 'general',
       '[{"key":"findings","label":"Findings","text":"..."},{"key":"impression","label":"Impression","text":"..."}]',
       '{"algorithm":"SM2","key_id":"hub","time":"2025-01-01T00:00:00Z","value":"' || md5('cs' || s) || '"}'
FROM scale_studies CROSS JOIN LATERAL generate_series(1, CASE WHEN s % 50 = 7 THEN 2 ELSE 1 END) AS v
WHERE s < :queued_from;

-- Drafts on the claimed part of the queue.
INSERT INTO reports (report_id, exam_id, version, status, findings, impression, author, created_at, updated_at, template, sections)
SELECT upper(substr(md5('draft' || s), 1, 26)), upper(substr(md5('exam' || s), 1, 26)), 1, 'draft', 'draft', '',
       'reader' || (s % 40), at + 700000, at + 800000, 'general', '[]'
FROM scale_studies WHERE s >= :queued_from AND s < :receiving_from AND s % 3 = 0;

INSERT INTO notifications (notification_id, at, kind, exam_id, pool_id, priority, due_at, message, webhook_state,
                           webhook_attempts, addressed)
SELECT upper(to_hex(at) || substr(md5('n' || s), 1, 15)), at + 60000, CASE WHEN s % 50 = 0 THEN 'exam.urgent' ELSE 'exam.escalated' END,
       upper(substr(md5('exam' || s), 1, 26)), lower(kind) || '-region' || (site / 10), 'stat', at + 3600000,
       'An exam needs a reader', CASE WHEN s >= :max_s - 100 AND s % 20 = 0 THEN 'pending' ELSE 'sent' END, 1,
       CASE WHEN s % 100 = 0 THEN 1 ELSE 0 END
FROM scale_studies WHERE s % 20 = 0 AND s < :receiving_from;

INSERT INTO notification_recipients (notification_id, username)
SELECT n.notification_id, 'reader' || r FROM notifications n CROSS JOIN generate_series(1, 2) AS r WHERE n.addressed = 1;

-- ---------------------------------------------------------------------------------------------
-- Lab: one message and one panel per two studies, six results per panel.
-- ---------------------------------------------------------------------------------------------
INSERT INTO lab_messages (message_id, source, sending_facility, control_id, site_id, version, sha256, size_bytes, blob_key,
                          received_at, received_by, panel_count, outcome)
SELECT upper(substr(md5('msg' || s), 1, 26)), 'hl7v2', 'LAB' || site, 'CTL' || s, site_id, '2.5.1', h, 2400,
       'sha256/' || substr(h, 1, 2) || '/' || substr(h, 3, 2) || '/' || h, at + 5000, 'lab.LAB' || site, 1, 'accepted'
FROM scale_studies CROSS JOIN LATERAL (SELECT md5('lab' || s) || md5('bal' || s) AS h) x WHERE s % 2 = 0;

INSERT INTO lab_panels (panel_id, message_id, seq, source, version, site_id, sending_facility, performing_lab, ordering_site,
                        ordering_provider, patient_key, issuer, patient_id, patient_name, birth_date, sex, placer_order,
                        filler_order, service_code, service_display, service_system, service_loinc, collected_at,
                        specimen_received_at, reported_at, collected_text, specimen_received_text, reported_text,
                        received_at, status, state, notes, review_pool, decision, release_rule, released_at, released_by,
                        critical_count)
SELECT upper(substr(md5('panel' || s), 1, 26)), upper(substr(md5('msg' || s), 1, 26)), 1, 'hl7v2', '2.5.1', site_id,
       'LAB' || site, 'Central Lab', site_id, 'D1^Doctor', patient_key, issuer, patient_id, patient_name, '19700101', 'F',
       'PO' || s, 'FO' || s, CASE s % 3 WHEN 0 THEN 'CBC' WHEN 1 THEN 'BMP' ELSE 'LFT' END, 'panel', 'L',
       CASE s % 3 WHEN 0 THEN '58410-2' WHEN 1 THEN '51990-0' ELSE '24325-3' END,
       at - 3600000, at - 1800000, at, '', '', '', at + 5000, 'final',
       CASE WHEN s % 5 = 0 THEN 'released' ELSE 'auto_released' END, '[]', 'lab-review', 'auto', NULL, at + 6000, NULL,
       CASE WHEN s % 200 = 0 THEN 1 ELSE 0 END
FROM scale_studies WHERE s % 2 = 0;

INSERT INTO lab_results (panel_id, seq, set_id, code, code_display, code_system, other_codes, loinc, loinc_source, value_kind,
                         value_num, value_decimal, comparator, unit, unit_display, unit_system, value_code, value_code_system,
                         value_text, ref_low, ref_high, ref_text, flags, status, observed_at, observed_text)
SELECT p.panel_id, r, r, 'A' || r, 'Analyte ' || r, 'L', '[]', (718 + r) || '-7', 'sent', 'numeric',
       4.5 + r, (4.5 + r)::text, NULL, 'g/dL', 'g/dL', 'http://unitsofmeasure.org', NULL, NULL, NULL, 1, 10, NULL, '[]',
       'final', p.collected_at, ''
FROM lab_panels p CROSS JOIN LATERAL generate_series(1, 6) AS r;

-- ---------------------------------------------------------------------------------------------
-- The audit trail: one ingest event per instance, a claim and a sign per signed exam.
-- ---------------------------------------------------------------------------------------------
DROP TABLE IF EXISTS scale_audit;
CREATE UNLOGGED TABLE scale_audit AS
SELECT received_at AS at, received_by AS actor, 'instance.store' AS action, 'instance' AS resource_type,
       sop_instance_uid AS resource_id, study_uid AS ref, 'stored' AS detail
FROM instances
UNION ALL
SELECT first_claimed_at, coalesce(claimed_by, offered_to, 'reader1'), 'exam.claim', 'exam', exam_id, study_uid, 'claimed'
FROM exams WHERE first_claimed_at IS NOT NULL
UNION ALL
SELECT signed_at, 'reader1', 'report.sign', 'exam', exam_id, study_uid, 'signed version 1' FROM exams WHERE signed_at IS NOT NULL;

INSERT INTO audit_events (event_id, at, actor, action, resource_type, resource_id, patient_key, outcome, detail, seq, prev_hash, hash)
SELECT upper(to_hex(a.at) || substr(md5(a.resource_id || a.action), 1, 15)), a.at, a.actor, a.action, a.resource_type,
       a.resource_id, st.patient_key, 'success', a.detail, row_number() OVER (ORDER BY a.at, a.resource_id),
       md5(a.resource_id) || md5(a.action || a.resource_id), md5(a.action || a.resource_id) || md5(a.resource_id)
FROM scale_audit a JOIN studies st ON st.study_uid = a.ref;
UPDATE audit_head SET seq = (SELECT max(seq) FROM audit_events), hash = md5('head') || md5('tail') WHERE id = 1;
DROP TABLE scale_audit;
DROP TABLE scale_series;

-- ---------------------------------------------------------------------------------------------
-- Indexes back, statistics, visibility map.
-- ---------------------------------------------------------------------------------------------
SET session_replication_role = origin;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT indexname, indexdef FROM scale_saved_indexes LOOP
    RAISE NOTICE 'creating %', r.indexname;
    EXECUTE r.indexdef;
  END LOOP;
END $$;
DROP TABLE scale_saved_indexes;
DROP TABLE scale_studies;
VACUUM ANALYZE;

SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE n_live_tup > 0 ORDER BY n_live_tup DESC;
SELECT pg_size_pretty(pg_database_size(current_database())) AS database_size;
