-- Version 7: senior review (审核). A junior reader's report on an exam whose routing rule asks for a
-- review is submitted, not signed: the exam waits for a senior of its pool, who signs the final report
-- with the junior named as its drafter.
ALTER TABLE exams ADD COLUMN awaiting_review BIGINT NOT NULL DEFAULT 0;
ALTER TABLE exams ADD COLUMN drafted_by TEXT;
