-- The fleet layer (same text for SQLite and PostgreSQL).

-- Soft delete: a deleted device keeps its deployment history; its controller id and token are
-- freed (renamed) so that the id can be registered again.
ALTER TABLE devices ADD COLUMN deleted_at BIGINT;

-- The kind of a failure (integrity, no_space, timed_out, ...), for error thresholds by kind.
ALTER TABLE actions ADD COLUMN failure_kind TEXT;

-- "Work changed" outbox for push fronts (LwM2M, MQTT): one row per device whose next work
-- changed (an assignment or a cancel), written in the same transaction as the change. `seq`
-- grows with every change, so a consumer that delivered change N deletes the row only if no
-- newer change came in meanwhile. Consumers claim rows with a lease (FOR UPDATE SKIP LOCKED on
-- PostgreSQL), so several server instances split the work.
CREATE TABLE work_changed (
    device_id BIGINT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    changed_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX work_changed_lease ON work_changed (lease_until, changed_at);
