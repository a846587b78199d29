-- Updraft server schema (SQLite). Keep in step with migrations/postgres/0001_initial.sql:
-- the store uses one set of queries for both backends.
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    controller_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    current_version TEXT,
    update_state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT
);
CREATE INDEX devices_current_version ON devices (current_version);
CREATE INDEX devices_update_state ON devices (update_state);

CREATE TABLE device_tags (
    device_id BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_tag ON device_tags (tag, device_id);

CREATE TABLE device_config (
    device_id BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
);

CREATE TABLE trusted_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    algorithm TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL UNIQUE,
    sequence BIGINT NOT NULL,
    manifest_digest TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    image_size BIGINT NOT NULL,
    image_sha256 TEXT NOT NULL,
    image_sha1 TEXT NOT NULL,
    image_md5 TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    envelope BLOB NOT NULL,
    key_id BIGINT NOT NULL REFERENCES trusted_keys (id),
    created_at BIGINT NOT NULL
);

-- One assignment of a release to a set of devices; counters are kept up to date by the store so
-- that a dashboard never scans the actions.
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id BIGINT NOT NULL REFERENCES releases (id),
    target TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    cancelled BIGINT NOT NULL DEFAULT 0
);

-- The per-device deployment (hawkBit calls it an action).
CREATE TABLE actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    device_id BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    release_id BIGINT NOT NULL REFERENCES releases (id),
    status TEXT NOT NULL,
    progress BIGINT,
    reason TEXT,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX actions_one_active_per_device ON actions (device_id) WHERE active = 1;
CREATE INDEX actions_device ON actions (device_id, id);
CREATE INDEX actions_rollout ON actions (rollout_id, id);

CREATE TABLE action_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id BIGINT NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    status TEXT NOT NULL,
    progress BIGINT,
    message TEXT
);
CREATE INDEX action_events_action ON action_events (action_id, id);
