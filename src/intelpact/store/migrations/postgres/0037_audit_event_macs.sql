-- Each audit event's MAC (PostgreSQL dialect of ../0037_audit_event_macs.sql, which
-- says why).
ALTER TABLE audit_events ADD COLUMN mac BYTEA;
