-- SQLite's 0015 tunes its trigram index's merges. PostgreSQL has no text index yet
-- (0011_search.sql): the version is kept so both backends number their schema alike.
SELECT 1;
