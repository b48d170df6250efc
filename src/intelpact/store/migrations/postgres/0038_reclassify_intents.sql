-- A reclassification begun and not yet completed (PostgreSQL dialect of
-- ../0038_reclassify_intents.sql, which says why).
CREATE TABLE reclassify_intents (
    object_id   TEXT NOT NULL,
    version     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    made        TEXT NOT NULL,
    PRIMARY KEY (object_id, version)
);
