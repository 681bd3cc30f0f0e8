-- Version 8: qualifications and offers. A rule may ask for a subspecialty; the hub offers each queued
-- exam to one on-duty qualified reader (the least loaded) for a while before offering it to another.
-- Notifications may be addressed to the readers on duty rather than to a whole pool.
ALTER TABLE exams ADD COLUMN subspecialty TEXT;          -- lower case; NULL: any reader of the modality
ALTER TABLE exams ADD COLUMN offered_to TEXT;            -- the last reader offered the exam
ALTER TABLE exams ADD COLUMN offered_at BIGINT;
ALTER TABLE exams ADD COLUMN offer_until BIGINT;         -- NULL or past: no live offer
ALTER TABLE exams ADD COLUMN offer_reason TEXT;
CREATE INDEX exams_offered_to ON exams (offered_to, offer_until);

ALTER TABLE notifications ADD COLUMN addressed BIGINT NOT NULL DEFAULT 0;   -- 1: only the recipients below
CREATE TABLE notification_recipients (
    notification_id TEXT NOT NULL,
    username TEXT NOT NULL,
    PRIMARY KEY (notification_id, username)
);
CREATE INDEX notification_recipients_by_user ON notification_recipients (username, notification_id);
