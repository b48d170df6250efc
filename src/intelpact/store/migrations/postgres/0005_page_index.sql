-- PostgreSQL dialect of ../0005_page_index.sql: its 0001 already made
-- objects_by_seq (collection_id, seq) INCLUDE (label_id); nothing to add.
SELECT 1;
