-- Originator controls (PostgreSQL dialect of ../0008_controls.sql).
--
-- A holder purges a recalled object's content: its rows stay as tombstones (id,
-- version, markings, the hash of what was destroyed) with `recalled` set, and no query
-- serves them again.
ALTER TABLE objects ADD COLUMN recalled TEXT;

-- Signed notices between nodes (recall, destroyed, reclassify), in and out. Out: the
-- courier's queue, retried until the partner's signed receipt arrives.
CREATE TABLE notices (
    notice_id   TEXT PRIMARY KEY,
    direction   TEXT COLLATE "C" NOT NULL,
    party       TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    object_id   TEXT,
    body        TEXT NOT NULL,        -- the signed notice (canonical JSON)
    made        TEXT NOT NULL,
    delivered   TEXT,                 -- out: receipt verified; in: received
    receipt     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX notices_pending ON notices (party, made) WHERE direction = 'out'
    AND delivered IS NULL;

-- At the originator: what it recalled from whom, and who confirmed destruction.
CREATE TABLE recalls (
    object_id   TEXT COLLATE "C" NOT NULL,
    party       TEXT COLLATE "C" NOT NULL,
    notice_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    issued      TEXT NOT NULL,
    destroyed   TEXT,                 -- when the holder's signed destruction receipt came
    receipt     TEXT,
    PRIMARY KEY (object_id, party)
);
