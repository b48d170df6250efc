-- The search indexer (0014) writes the trigram index a thousand rows a transaction, and
-- FTS5 merges its segments as they accumulate: with the default `automerge` of 4, the
-- index cost 35 µs of CPU a row at 50,000 rows, and 26 with 16 (27 with 8). Sixteen
-- segments a level before a merge write each row fewer times; a search reads a few more
-- segments, and the console's first pages measured the same (docs/performance.md).
INSERT INTO objects_text (objects_text, rank) VALUES ('automerge', 16);
