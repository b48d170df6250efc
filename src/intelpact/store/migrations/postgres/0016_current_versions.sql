-- Rows superseded by a newer version under the same label and spec_version, and the
-- partial indexes a page of latest versions walks (PostgreSQL dialect of
-- ../0016_current_versions.sql, which says why).
ALTER TABLE objects ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
UPDATE objects SET superseded = 1 WHERE EXISTS (SELECT 1 FROM objects n WHERE
    n.collection_id = objects.collection_id AND n.object_id = objects.object_id AND
    n.version > objects.version AND n.label_id = objects.label_id AND
    n.spec_version = objects.spec_version);
CREATE INDEX objects_current_by_seq ON objects (collection_id, seq) WHERE superseded = 0;
CREATE INDEX objects_current_by_type ON objects (collection_id, object_type, seq)
    WHERE superseded = 0;
