-- The search index holds its text folded by the node's own case folding (fold_text in
-- store/base.py, Python's str.casefold; the SQL function `fold_text`, which the store
-- gives each connection), and the store folds the query so too (docs/console.md,
-- "Case"). FTS5's trigram tokenizer folded the case of single letters only: a query
-- folded by casefold ("Straße" is "strasse", "ﬁ" is "fi", "ς" is "σ") found nothing in
-- text it had not folded so, and PostgreSQL, whose lower() folds by the server's locale
-- ("C": ASCII only), found other objects than SQLite for the same search. The tokenizer
-- still folds what it is given, both sides alike.
--
-- The triggers of 0017 and 0020 that write the index fold what they write, given as a
-- BLOB (sqlite3 cannot hand a function text that is not UTF-8: _fold_sql). The text
-- indexed before is folded again where folding changes more than ASCII letters (which
-- the tokenizer folds the same): one pass over the index, rewriting only those rows.
DROP TRIGGER objects_text_change;

CREATE TRIGGER objects_text_change AFTER UPDATE OF body ON objects
    WHEN old.seq <= (SELECT seq FROM objects_text_indexed) BEGIN
    DELETE FROM objects_text WHERE rowid = old.seq;
    INSERT INTO objects_text (rowid, text) SELECT new.seq, fold_text(CAST(
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
        ELSE '' END AS BLOB));
END;

DROP TRIGGER object_portions_add;

CREATE TRIGGER object_portions_add AFTER INSERT ON object_portions BEGIN
    INSERT INTO objects_portion_text (rowid, name, description) SELECT new.seq,
        CASE WHEN new.name_label IS NOT NULL AND json_valid(o.body)
            THEN fold_text(CAST(coalesce(json_extract(o.body, '$.name'), '') AS BLOB)) ELSE '' END,
        CASE WHEN new.description_label IS NOT NULL AND json_valid(o.body)
            THEN fold_text(CAST(coalesce(json_extract(o.body, '$.description'), '') AS BLOB)) ELSE '' END
        FROM objects o WHERE o.seq = new.seq;
END;

UPDATE objects_text SET text = fold_text(CAST(text AS BLOB))
    WHERE fold_text(CAST(text AS BLOB)) <> lower(text);
UPDATE objects_portion_text SET name = fold_text(CAST(name AS BLOB)),
    description = fold_text(CAST(description AS BLOB))
    WHERE fold_text(CAST(name AS BLOB)) <> lower(name)
    OR fold_text(CAST(description AS BLOB)) <> lower(description);
