-- A security officer resolves an alert (PostgreSQL dialect of ../0029_alert_resolution.sql,
-- which says why).
ALTER TABLE alerts ADD COLUMN resolved TEXT;
ALTER TABLE alerts ADD COLUMN resolution TEXT;
