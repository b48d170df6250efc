-- The object index of the partner audit events kept (partner_event_refs) by leaf, so
-- that `audit verify` checks it a page at a time against the events' bodies
-- (AuditLog.check_kept): a row deleted from it would hide an event from
-- `audit partner --object`, the console's partner view and a compromise report's
-- history check, and a row added would show one where it does not belong.
CREATE INDEX partner_event_refs_by_leaf ON partner_event_refs (party, leaf);
