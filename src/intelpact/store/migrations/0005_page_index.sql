-- Pages walk a collection in seq order: an index on (collection_id, seq) lets the
-- page query stop after `limit` visible rows instead of sorting every visible row.
CREATE INDEX objects_by_seq ON objects (collection_id, seq);
