-- How far this node has checked each partner's audit events about our objects
-- (PostgreSQL dialect of ../0027_partner_audit_watch.sql, which says why).
CREATE TABLE partner_audit_cursors (
    party       TEXT COLLATE "C" PRIMARY KEY,
    read_after  BIGINT NOT NULL,
    next_seq    BIGINT NOT NULL,
    checked     TEXT NOT NULL
);
