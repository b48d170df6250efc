-- A page of one type walks that type's rows in seq order and stops at `limit`,
-- instead of walking every row of the collection to find a sparse type.
CREATE INDEX objects_by_type ON objects (collection_id, object_type, seq);
