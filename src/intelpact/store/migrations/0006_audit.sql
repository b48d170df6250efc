-- The audit log (docs/audit.md): an append-only RFC 9162 Merkle tree of events.
--
-- audit_events is the sequence: one row per event, its leaf index fixed when it is
-- appended, its body the exact bytes hashed into the leaf. Columns beside the body
-- exist only to find events; the body is the record.
CREATE TABLE audit_events (
    idx         INTEGER PRIMARY KEY,   -- leaf index, 0-based, contiguous
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    person      TEXT,                  -- pseudonym of the person who acted
    party       TEXT,                  -- the partner involved
    originator  TEXT,                  -- originator of the objects concerned
    body        TEXT NOT NULL          -- canonical JSON: the leaf data
);
CREATE INDEX audit_by_originator ON audit_events (originator, idx);
CREATE INDEX audit_by_person ON audit_events (person, idx);
CREATE INDEX audit_by_kind ON audit_events (kind, idx);

-- Which objects each event concerns.
CREATE TABLE audit_refs (
    object_id   TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    PRIMARY KEY (object_id, idx)
) WITHOUT ROWID;

-- The integrated tree: the hash of every perfect subtree, (level, index); level 0
-- holds the leaf hashes. Written by the integrator only, never changed.
CREATE TABLE audit_nodes (
    level       INTEGER NOT NULL,
    idx         INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Checkpoints this node signed (C2SP signed notes), one per tree size.
CREATE TABLE audit_checkpoints (
    size        INTEGER PRIMARY KEY,
    note        TEXT NOT NULL,
    signed      TEXT NOT NULL
);

-- Checkpoints partners signed and showed us (gossip), kept to compare.
CREATE TABLE partner_checkpoints (
    party       TEXT NOT NULL,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    received    TEXT NOT NULL,
    PRIMARY KEY (party, size)
);

-- Alerts for the security officer (e.g. a partner showed two inconsistent checkpoints).
CREATE TABLE alerts (
    alert_id    INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    party       TEXT,
    detail      TEXT NOT NULL,
    raised      TEXT NOT NULL
);
