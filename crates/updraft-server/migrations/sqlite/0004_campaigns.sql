-- Campaigns: a release rolled out to a target in phases (see src/campaign). Keep in step with
-- the other backend's 0004_campaigns.sql.

-- One campaign. `state` is the engine's small serialized state (policy, counters, gates);
-- `status` mirrors its status for filters and for the scheduler's claim.
CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    release_id BIGINT NOT NULL REFERENCES releases (id),
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaigns_status ON campaigns (status, id);

ALTER TABLE rollouts ADD COLUMN campaign_id BIGINT;

-- One row per device of a campaign (the engine's Member, plus the device's current action).
CREATE TABLE campaign_members (
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    device_id BIGINT NOT NULL REFERENCES devices (id),
    seq BIGINT NOT NULL,
    phase BIGINT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    install_triggered BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    since BIGINT NOT NULL,
    deadline BIGINT,
    action_id BIGINT,
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_members_waiting ON campaign_members (campaign_id, status, seq);
CREATE INDEX campaign_members_due ON campaign_members (campaign_id, deadline);

-- Device reports on a campaign's actions, written in the report's transaction and consumed
-- (deleted) by the campaign's scheduler tick under the campaign's row lock.
CREATE TABLE campaign_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id BIGINT NOT NULL,
    device_id BIGINT NOT NULL,
    action_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    failure_kind TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX campaign_events_campaign ON campaign_events (campaign_id, id);

-- Who changed what, when.
CREATE TABLE campaign_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    what TEXT NOT NULL
);
CREATE INDEX campaign_log_campaign ON campaign_log (campaign_id, id);
