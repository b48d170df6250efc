-- The search's text, folded by the node's own case folding (fold_text in store/base.py,
-- Python's str.casefold), as the query is (docs/console.md, "Case"): PostgreSQL's
-- lower() folds by the server's locale ("C": ASCII only), so "élan" did not find "ÉLAN"
-- here while SQLite found it, and neither found "Straße" by "strasse", its casefold.
-- SQL cannot fold as Python does, so the store writes each stored version's name and
-- description folded (`objects_folded`) when it stores it, in the same transaction, and
-- folds the versions stored before this migration once, as it opens the database
-- (store/postgres.py, _fold_stored). A body changed (a recall's tombstone, whose text is
-- destroyed) loses its folded text; a version deleted loses it with its row.
CREATE TABLE objects_folded (
    seq          BIGINT PRIMARY KEY REFERENCES objects(seq) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL
);
CREATE FUNCTION objects_folded_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM objects_folded WHERE seq = OLD.seq;
    RETURN NULL;
END
$$;
CREATE TRIGGER objects_folded_forget AFTER UPDATE OF body ON objects
    FOR EACH ROW EXECUTE FUNCTION objects_folded_forget();
