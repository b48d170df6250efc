-- The kind each kept partner audit event is filed under (Store.partner_events), so that
-- `audit partner --kind` and the console's partner view filtered by kind find a
-- partner's denials, say, by key, not by reading every event kept. Filed as they are
-- kept (filed_under: the body's kind, as Python decodes it). The events kept before
-- are left under none, and a search by kind reads their bodies, as every search did
-- before: the database's JSON is not Python's (a key given twice, NaN), and a kind
-- filed otherwise than the body is read would hide the event from the search.
-- `audit verify` checks that each filed kind is its body's (AuditLog.check_kept).
ALTER TABLE partner_events ADD COLUMN kind TEXT;
CREATE INDEX partner_events_by_kind ON partner_events (party, kind, leaf);
