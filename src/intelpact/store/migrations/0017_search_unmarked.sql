-- The search index holds a row's name and description only where no granular marking
-- selects them (docs/console.md, "Withheld text is never searched"): a marked portion
-- may be withheld from a reader, and a row found on withheld text, then dropped by the
-- node, changed the page (49 results and an 'Older results' link instead of 50). The
-- expression is `_TEXT` in store/sqlite.py. Only rows with portions can change: they
-- are indexed again (those at or below the indexer's mark; the others are to come).
DROP TRIGGER objects_text_change;

CREATE TRIGGER objects_text_change AFTER UPDATE OF body ON objects
    WHEN old.seq <= (SELECT seq FROM objects_text_indexed) BEGIN
    DELETE FROM objects_text WHERE rowid = old.seq;
    INSERT INTO objects_text (rowid, text) SELECT new.seq,
        CASE WHEN json_valid(new.body) THEN
            CASE WHEN new.has_portions AND EXISTS (SELECT 1 FROM
                    json_each(new.body, '$.granular_markings') g,
                    json_each(g.value, '$.selectors') s
                    WHERE s.value = 'name' OR s.value LIKE 'name.%')
                THEN '' ELSE coalesce(json_extract(new.body, '$.name'), '') END
            || char(10) ||
            CASE WHEN new.has_portions AND EXISTS (SELECT 1 FROM
                    json_each(new.body, '$.granular_markings') g,
                    json_each(g.value, '$.selectors') s
                    WHERE s.value = 'description' OR s.value LIKE 'description.%')
                THEN '' ELSE coalesce(json_extract(new.body, '$.description'), '') END
        ELSE '' END;
END;

DELETE FROM objects_text WHERE rowid IN (SELECT seq FROM objects WHERE has_portions
    AND seq <= (SELECT seq FROM objects_text_indexed));

INSERT INTO objects_text (rowid, text) SELECT seq,
    CASE WHEN json_valid(body) THEN
        CASE WHEN EXISTS (SELECT 1 FROM json_each(body, '$.granular_markings') g,
                json_each(g.value, '$.selectors') s
                WHERE s.value = 'name' OR s.value LIKE 'name.%')
            THEN '' ELSE coalesce(json_extract(body, '$.name'), '') END
        || char(10) ||
        CASE WHEN EXISTS (SELECT 1 FROM json_each(body, '$.granular_markings') g,
                json_each(g.value, '$.selectors') s
                WHERE s.value = 'description' OR s.value LIKE 'description.%')
            THEN '' ELSE coalesce(json_extract(body, '$.description'), '') END
    ELSE '' END
    FROM objects WHERE has_portions AND seq <= (SELECT seq FROM objects_text_indexed);
