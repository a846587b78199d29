-- The vendor and class a release is signed for (lowercase hyphenated UUIDs), so an upload whose
-- sequence does not rise above the class's highest can be refused. Rows from before this
-- migration are filled from their stored envelope at start; NULL means the class is unknown.
-- Keep in step with migrations/postgres/0003_release_class.sql.
ALTER TABLE releases ADD COLUMN vendor_id TEXT;
ALTER TABLE releases ADD COLUMN class_id TEXT;
CREATE INDEX releases_class ON releases (vendor_id, class_id, sequence);

-- `/metrics` counts actions by status on every scrape.
CREATE INDEX actions_status ON actions (status);
