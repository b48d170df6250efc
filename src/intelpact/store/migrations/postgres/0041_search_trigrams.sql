-- A text index for the search (docs/console.md, "Search"): a trigram index (pg_trgm) on
-- the folded name and description (objects_folded, migration 0040), which the search's
-- first test (is the text in this version at all?) asks as a LIKE, so that a rare word
-- or one found nowhere is found along the index, not by reading every version. pg_trgm
-- ships with PostgreSQL (contrib) and is a trusted extension: the database's owner may
-- create it. Where it cannot be (not installed, or the node's role may not create it),
-- the index is not made, and the search reads every version as before; making the
-- extension and this index later (CREATE EXTENSION pg_trgm, then the index below) is
-- all it takes.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm cannot be created here (%): the search reads every version', SQLERRM;
END
$$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX objects_folded_trigrams ON objects_folded
            USING gin ((name || E'\n' || description) gin_trgm_ops);
    END IF;
END
$$;
