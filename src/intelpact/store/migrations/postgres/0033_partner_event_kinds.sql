-- The kind each kept partner audit event is filed under (PostgreSQL dialect of
-- ../0033_partner_event_kinds.sql, which says why).
ALTER TABLE partner_events ADD COLUMN kind TEXT COLLATE "C";
CREATE INDEX partner_events_by_kind ON partner_events (party, kind, leaf);
