-- The partner audit events this node's watch read, kept as evidence (PostgreSQL dialect
-- of ../0030_partner_events.sql, which says why).
CREATE TABLE partner_events (
    party       TEXT COLLATE "C" NOT NULL,
    leaf        BIGINT NOT NULL,
    seq         BIGINT,
    body        TEXT NOT NULL,
    proof       BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    PRIMARY KEY (party, leaf)
);

DELETE FROM partner_audit_cursors;
