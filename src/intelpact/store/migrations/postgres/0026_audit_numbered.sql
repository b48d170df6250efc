-- Events about a partner's objects numbered per originator (PostgreSQL dialect of
-- ../0026_audit_numbered.sql, which says why).
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX audit_by_originator_seq ON audit_events (originator, seq);
