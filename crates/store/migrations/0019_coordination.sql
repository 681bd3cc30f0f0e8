-- Version 19: several hub replicas on one catalog behave as one hub.
-- `job_leases`: the background sweeps (routing, escalation, offers, critical values, webhooks) run on
-- the one replica that holds the lease; a replica that stops renewing loses it after `lease_until`.
-- `hub_signals`: a counter per signal (e.g. `routing.reload`) that every replica polls, so a reload
-- asked of one replica is done by all.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);

CREATE TABLE hub_signals (
    signal TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    raised_at BIGINT NOT NULL,
    raised_by TEXT NOT NULL
);
