-- Version 5: turnaround per exam (received → routed → claimed → signed → published) and its SLA outcome.
-- received is studies.first_received_at and routed is exams.created_at; the rest is written by the
-- statements that already change the exam (the claim UPDATE, the finalize transaction), so no hot path
-- gains a round trip.

ALTER TABLE exams ADD COLUMN first_claimed_at BIGINT;    -- the first lease ever taken; renewals keep it
ALTER TABLE exams ADD COLUMN signed_at BIGINT;           -- the final report was signed
ALTER TABLE exams ADD COLUMN published_at BIGINT;        -- results visible to the alliance (today: = signed_at)
ALTER TABLE exams ADD COLUMN sla_breached BIGINT NOT NULL DEFAULT 0;  -- 1 when signed after due_at

-- Exams signed before this version: times from their final report and their first claim's audit row.
UPDATE exams SET signed_at = (SELECT MIN(r.signed_at) FROM reports r WHERE r.exam_id = exams.exam_id AND r.status = 'final')
WHERE state = 'signed';
UPDATE exams SET published_at = signed_at WHERE signed_at IS NOT NULL;
UPDATE exams SET sla_breached = 1 WHERE signed_at IS NOT NULL AND signed_at > due_at;
-- The audit table has no index by resource; one is built for this backfill only.
CREATE INDEX audit_backfill_claims ON audit_events (resource_id, action);
UPDATE exams SET first_claimed_at = (SELECT MIN(a.at) FROM audit_events a
                                     WHERE a.resource_id = exams.exam_id AND a.action = 'exam.claim' AND a.resource_type = 'exam');
DROP INDEX audit_backfill_claims;

CREATE INDEX exams_by_created ON exams (created_at);
