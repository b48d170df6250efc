-- A page of one type in seq order (PostgreSQL dialect of ../0010_type_index.sql).
CREATE INDEX objects_by_type ON objects (collection_id, object_type, seq);
