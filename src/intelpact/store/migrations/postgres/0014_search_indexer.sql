-- SQLite's 0014 moves its text index out of the objects' transaction. PostgreSQL has no
-- text index yet (0011_search.sql), so there is nothing to move: the version is kept so
-- both backends number their schema alike.
SELECT 1;
