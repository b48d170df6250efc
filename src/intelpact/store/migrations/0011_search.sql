-- The console's search (docs/console.md): a trigram index over each stored version's
-- name and description (FTS5, case-insensitive substrings of 3 characters or more),
-- kept in step with `objects` by triggers. The page query joins it by `seq` (the
-- rowid), so the label filter stays in the same query as the text. A recalled
-- version's tombstone has neither, so it drops out of the index when purged.
CREATE VIRTUAL TABLE objects_text USING fts5(text, tokenize = 'trigram');

CREATE TRIGGER objects_text_add AFTER INSERT ON objects BEGIN
    INSERT INTO objects_text (rowid, text) SELECT new.seq,
        CASE WHEN json_valid(new.body) THEN
            coalesce(json_extract(new.body, '$.name'), '') || char(10) ||
            coalesce(json_extract(new.body, '$.description'), '')
        ELSE '' END;
END;

CREATE TRIGGER objects_text_remove AFTER DELETE ON objects BEGIN
    DELETE FROM objects_text WHERE rowid = old.seq;
END;

CREATE TRIGGER objects_text_change AFTER UPDATE OF body ON objects BEGIN
    DELETE FROM objects_text WHERE rowid = old.seq;
    INSERT INTO objects_text (rowid, text) SELECT new.seq,
        CASE WHEN json_valid(new.body) THEN
            coalesce(json_extract(new.body, '$.name'), '') || char(10) ||
            coalesce(json_extract(new.body, '$.description'), '')
        ELSE '' END;
END;

INSERT INTO objects_text (rowid, text)
    SELECT seq, coalesce(json_extract(body, '$.name'), '') || char(10) ||
                coalesce(json_extract(body, '$.description'), '')
    FROM objects WHERE json_valid(body) AND recalled IS NULL;

-- The search's originator filter walks one originator's rows in seq order.
CREATE INDEX objects_by_originator ON objects (collection_id, originator, seq);
