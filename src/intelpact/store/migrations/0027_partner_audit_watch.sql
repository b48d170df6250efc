-- How far this node has checked each partner's audit events about our objects, in the
-- background (Courier.watch_once, docs/audit.md "Completeness"): the leaf to read after,
-- and the number the next event about our objects must have. Each round reads on from
-- here, so an event a partner leaves out is alerted within a gossip interval.
CREATE TABLE partner_audit_cursors (
    party       TEXT PRIMARY KEY,
    read_after  INTEGER NOT NULL,
    next_seq    INTEGER NOT NULL,
    checked     TEXT NOT NULL
);
