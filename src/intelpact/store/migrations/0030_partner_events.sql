-- The events about our objects that this node's audit watch read from each partner's
-- log, proven and numbered without a gap (Courier.read_on), kept as the evidence of how
-- that partner handled our information: each event's body exactly as the partner signed
-- it into its log, its leaf, its number among the events about our objects (NULL: an
-- event from before numbering), and its inclusion proof (its SHA-256 hashes one after
-- another) in the partner's checkpoint of `size` events, which partner_checkpoints
-- keeps. Kept in the transaction that moves the watch's cursor past them, so every event
-- below the cursor is here, or was alerted as withheld (docs/audit.md, "Evidence kept").
-- `audit partner` and a compromise report's history check read them here.
CREATE TABLE partner_events (
    party       TEXT NOT NULL,
    leaf        INTEGER NOT NULL,
    seq         INTEGER,
    body        TEXT NOT NULL,
    proof       BLOB NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (party, leaf)
);

-- The watch read what came before without keeping it: it reads each partner's log again
-- from the start (a round at a time), keeping every event. What it alerted stays
-- alerted; meeting the same gap again raises no second alert.
DELETE FROM partner_audit_cursors;
