-- Version 4: what routing rules decide beyond pool, priority and due time.

-- The rule requires a senior (second) review of the report (0/1). Shown on the worklist; the review
-- workflow reads it.
ALTER TABLE exams ADD COLUMN review_required BIGINT NOT NULL DEFAULT 0;
-- The escalation ladder: after the first step (the rule's fallback_pool) this is when the exam, still
-- unclaimed, goes on to escalate_to. NULL when no further step is planned.
ALTER TABLE exams ADD COLUMN escalate_next_at BIGINT;
CREATE INDEX exams_escalate_next ON exams (state, escalate_next_at);
