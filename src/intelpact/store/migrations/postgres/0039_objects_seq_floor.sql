-- SQLite's 0039 keeps `objects.seq` from being given twice after a delete. PostgreSQL's
-- sequence never goes back: the version is kept so both backends number their schema
-- alike.
SELECT 1;
