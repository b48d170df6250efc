-- The labels that gate a version's granular-marked name and description, the versions
-- waiting for them and the agreement they were worked out under (PostgreSQL dialect of
-- ../0020_portion_search.sql, which says why). PostgreSQL has no text index: its query
-- reads a portion's text from the body, where this table's label is one the reader may
-- read (store/postgres.py, select).
CREATE TABLE object_portions (
    seq                BIGINT PRIMARY KEY,
    name_label         BIGINT REFERENCES labels(label_id),
    description_label  BIGINT REFERENCES labels(label_id)
);
CREATE TABLE object_portions_pending (seq BIGINT PRIMARY KEY);
CREATE TABLE object_portions_agreement (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    content_hash  TEXT NOT NULL
);
