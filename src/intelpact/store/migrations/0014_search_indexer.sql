-- The console's search index (0011_search.sql) is written by an indexer after the
-- objects' transaction, not by a trigger inside it (docs/console.md, "The search
-- index"): `objects_text_indexed.seq` is the highest `seq` indexed, every row at or
-- below it is in `objects_text`, none above it is. A search brings the index up to date
-- before it runs, so it never misses a stored object.
CREATE TABLE objects_text_indexed (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO objects_text_indexed VALUES (1, coalesce((SELECT max(seq) FROM objects), 0));

DROP TRIGGER objects_text_add;
DROP TRIGGER objects_text_remove;
DROP TRIGGER objects_text_change;

-- A row deleted leaves the index; if it held the highest seq, SQLite may give that seq
-- to the next row stored (seq has no AUTOINCREMENT): the mark comes down with it, so
-- that row is indexed too.
CREATE TRIGGER objects_text_remove AFTER DELETE ON objects BEGIN
    DELETE FROM objects_text WHERE rowid = old.seq;
    UPDATE objects_text_indexed
        SET seq = coalesce((SELECT max(seq) FROM objects), 0)
        WHERE seq > coalesce((SELECT max(seq) FROM objects), 0);
END;

-- A body changed (a recall's tombstone, a relabel) is re-indexed at once if it was
-- indexed already; otherwise the indexer reads the new body when it comes to it.
CREATE TRIGGER objects_text_change AFTER UPDATE OF body ON objects
    WHEN old.seq <= (SELECT seq FROM objects_text_indexed) BEGIN
    DELETE FROM objects_text WHERE rowid = old.seq;
    INSERT INTO objects_text (rowid, text) SELECT new.seq,
        CASE WHEN json_valid(new.body) THEN
            coalesce(json_extract(new.body, '$.name'), '') || char(10) ||
            coalesce(json_extract(new.body, '$.description'), '')
        ELSE '' END;
END;
