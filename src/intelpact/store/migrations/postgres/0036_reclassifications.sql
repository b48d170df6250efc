-- Each reclassification this node made of its own objects (PostgreSQL dialect of
-- ../0036_reclassifications.sql, which says why).
CREATE TABLE reclassifications (
    object_id   TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    marking     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    made        TEXT NOT NULL,
    PRIMARY KEY (object_id, version)
);

CREATE INDEX notices_reclassify ON notices (object_id)
    WHERE kind = 'reclassify' AND direction = 'in';
