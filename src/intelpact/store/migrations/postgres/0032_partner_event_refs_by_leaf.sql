-- The object index of the partner audit events kept, by leaf (PostgreSQL dialect of
-- ../0032_partner_event_refs_by_leaf.sql, which says why).
CREATE INDEX partner_event_refs_by_leaf ON partner_event_refs (party, leaf);
