-- The search indexer (0014) writes the trigram index a thousand rows a transaction, and
-- FTS5 merges its segments as they accumulate: with the default `automerge` of 4, the
-- merges were about a third of the index's CPU at 50,000 rows (35 µs a row, 26 with 16),
-- more as it grows. Sixteen segments a level before a merge (FTS5's largest setting)
-- write each row fewer times; a search reads a few more segments (docs/performance.md).
INSERT INTO objects_text (objects_text, rank) VALUES ('automerge', 16);
