-- The agreement text the stored labels were worked out under, and the one they are
-- being worked out under now (PostgreSQL dialect of ../0021_labels_agreement.sql, which
-- says why).
CREATE TABLE labels_agreement (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    content_hash  TEXT,
    relabelling   TEXT
);
