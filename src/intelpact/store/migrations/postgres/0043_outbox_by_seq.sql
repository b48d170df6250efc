-- SQLite's 0043 indexes the outbox by seq, as PostgreSQL's 0002 made it (outbox_by_seq):
-- the version is kept so both backends number their schema alike.
SELECT 1;
