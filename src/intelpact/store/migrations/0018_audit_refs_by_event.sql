-- The object index (audit_refs) by event: `audit verify` compares, a range of events at
-- a time, the objects each integrated event's body names with the rows indexed for it
-- (docs/audit.md). Keyed by object only, each range was a scan of the whole table.
CREATE INDEX audit_refs_by_event ON audit_refs (idx, object_id);
