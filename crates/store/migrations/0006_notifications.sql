-- Version 6: notifications of urgent and escalated exams, for readers to poll and for an outbound webhook.
-- No patient identifiers: exam id, pool, priority, due time and a reason in words.
CREATE TABLE notifications (
    notification_id TEXT PRIMARY KEY,        -- ULID: orders by time, used as the polling cursor
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,                      -- exam.urgent | exam.escalated
    exam_id TEXT NOT NULL,
    pool_id TEXT NOT NULL,                   -- the pool whose readers are told
    priority TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    webhook_state TEXT NOT NULL,             -- none | pending | sent | failed
    webhook_attempts BIGINT NOT NULL
);
CREATE INDEX notifications_by_pool ON notifications (pool_id, notification_id);
CREATE INDEX notifications_webhook ON notifications (webhook_state, notification_id);
