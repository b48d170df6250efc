-- The console's search finds a granular-marked name or description (a portion) for a
-- reader who may read that portion, and for no one else (docs/console.md, "Portions").
-- 0017 left such text out of `objects_text`; here it gets an index of its own, gated by
-- the label of each portion:
--
-- `object_portions`: per stored version with portions, the label that gates its name and
-- its description (NULL: that property is no portion, it is in `objects_text`). The node
-- works the labels out from the body as it serves it (Access.view: the granular
-- markings, with the node's agreement and marking-definitions), so the store cannot:
-- a version to label waits in `object_portions_pending`, which the node empties before
-- every search with text and in the indexer's thread. `object_portions_agreement`
-- holds the content hash of the agreement they were worked out under; a node opened
-- with another one (an amendment pinned) works them out again, as a node opened with
-- none yet (this migration) works out those of every version stored before.
-- `objects_portion_text`: FTS5 trigram, rowid = seq, the text of each portion (''
-- where that property is no portion), written and removed with its `object_portions`
-- row by the triggers below. A recall's tombstone and a deleted version lose both rows
-- (store/sqlite.py, _forget_portions).
CREATE TABLE object_portions (
    seq                INTEGER PRIMARY KEY,
    name_label         INTEGER REFERENCES labels(label_id),
    description_label  INTEGER REFERENCES labels(label_id)
);
CREATE TABLE object_portions_pending (seq INTEGER PRIMARY KEY);
CREATE TABLE object_portions_agreement (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    content_hash  TEXT NOT NULL
);

CREATE VIRTUAL TABLE objects_portion_text USING fts5(name, description,
                                                     tokenize = 'trigram');
INSERT INTO objects_portion_text (objects_portion_text, rank) VALUES ('automerge', 16);

CREATE TRIGGER object_portions_add AFTER INSERT ON object_portions BEGIN
    INSERT INTO objects_portion_text (rowid, name, description) SELECT new.seq,
        CASE WHEN new.name_label IS NOT NULL AND json_valid(o.body)
            THEN coalesce(json_extract(o.body, '$.name'), '') ELSE '' END,
        CASE WHEN new.description_label IS NOT NULL AND json_valid(o.body)
            THEN coalesce(json_extract(o.body, '$.description'), '') ELSE '' END
        FROM objects o WHERE o.seq = new.seq;
END;

CREATE TRIGGER object_portions_remove AFTER DELETE ON object_portions BEGIN
    DELETE FROM objects_portion_text WHERE rowid = old.seq;
END;
