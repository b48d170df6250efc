-- SQLite's 0017 indexes a name or description only where no granular marking selects
-- it. PostgreSQL has no text index (0011_search.sql): its query reads the same text
-- from the body (store/postgres.py, _TEXT). The version is kept so both backends number
-- their schema alike.
SELECT 1;
