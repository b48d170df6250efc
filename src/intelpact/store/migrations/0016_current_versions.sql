-- A row is superseded when a newer version of its object is stored under the same
-- label and spec_version: whoever may read it may read that one, so it is nobody's
-- latest version. Of each (collection, object, label, spec_version) only the newest row
-- is not superseded. A page of latest versions (TAXII's default) walks the rows that are
-- not, through the partial indexes below, instead of every version stored before them:
-- after a vessel has moved a thousand times, its first 999 positions are skipped.
ALTER TABLE objects ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
UPDATE objects SET superseded = 1 WHERE EXISTS (SELECT 1 FROM objects n WHERE
    n.collection_id = objects.collection_id AND n.object_id = objects.object_id AND
    n.version > objects.version AND n.label_id = objects.label_id AND
    n.spec_version = objects.spec_version);
CREATE INDEX objects_current_by_seq ON objects (collection_id, seq) WHERE superseded = 0;
CREATE INDEX objects_current_by_type ON objects (collection_id, object_type, seq)
    WHERE superseded = 0;
