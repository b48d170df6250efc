-- intelpact store, schema version 1. The same tables on SQLite and PostgreSQL.
-- Labels are kept once each; every object version points at its base label
-- (what decides whether a person may see it) and its banner label.

CREATE TABLE labels (
    label_id     INTEGER PRIMARY KEY,
    label_key    TEXT NOT NULL UNIQUE,
    agreement    TEXT NOT NULL,
    rank         INTEGER NOT NULL,
    originator   TEXT NOT NULL,
    rel_to       TEXT,              -- ',JPN,NZL,' ; NULL: no releasability restriction
    caveats      TEXT NOT NULL,     -- ',NZEO,' or ''
    communities  TEXT NOT NULL,     -- JSON list of sorted lists
    sources      TEXT NOT NULL      -- ',JPN,NZL,'
);

CREATE TABLE collections (
    collection_id TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    alias         TEXT UNIQUE,
    created       TEXT NOT NULL
);

CREATE TABLE objects (
    seq            INTEGER PRIMARY KEY,
    collection_id  TEXT NOT NULL REFERENCES collections(collection_id),
    object_id      TEXT NOT NULL,
    object_type    TEXT NOT NULL,
    spec_version   TEXT NOT NULL,
    version        TEXT NOT NULL,   -- modified (or created, or date_added), microseconds, 'Z'
    date_added     TEXT NOT NULL,   -- microseconds, 'Z'; strictly increasing with seq
    label_id       INTEGER NOT NULL REFERENCES labels(label_id),
    banner_id      INTEGER NOT NULL REFERENCES labels(label_id),
    originator     TEXT NOT NULL,
    has_portions   INTEGER NOT NULL,
    body           TEXT NOT NULL,
    body_hash      TEXT NOT NULL,
    published_by   TEXT,
    received_from  TEXT,
    UNIQUE (collection_id, object_id, version)
);
CREATE INDEX objects_by_label ON objects (collection_id, label_id, seq);
CREATE INDEX objects_by_added ON objects (collection_id, date_added);

-- marking-definitions the node understands, whichever collection carried them
CREATE TABLE markings (
    marking_id  TEXT PRIMARY KEY,
    body        TEXT NOT NULL
);

CREATE TABLE statuses (
    status_id      TEXT PRIMARY KEY,
    collection_id  TEXT NOT NULL,
    owner          TEXT NOT NULL,
    created        TEXT NOT NULL,
    body           TEXT NOT NULL    -- the TAXII status resource, JSON
);

CREATE TABLE people (
    name           TEXT PRIMARY KEY,
    party          TEXT NOT NULL,
    clearance      TEXT NOT NULL,
    caveats        TEXT NOT NULL,   -- JSON list
    communities    TEXT NOT NULL,   -- JSON list
    roles          TEXT NOT NULL,   -- JSON list
    password_hash  TEXT,
    created        TEXT NOT NULL,
    revoked        TEXT
);

CREATE TABLE tokens (
    digest   TEXT PRIMARY KEY,
    name     TEXT NOT NULL REFERENCES people(name),
    label    TEXT NOT NULL DEFAULT '',
    created  TEXT NOT NULL,
    revoked  TEXT
);
