-- One record of the agreement text the node's labels are under (PostgreSQL dialect of
-- ../0022_one_agreement_record.sql, which says why).
DELETE FROM object_portions WHERE NOT EXISTS (
    SELECT 1 FROM labels_agreement l, object_portions_agreement p
    WHERE l.content_hash = p.content_hash AND l.relabelling IS NULL);
INSERT INTO object_portions_pending (seq)
    SELECT seq FROM objects WHERE has_portions <> 0 AND recalled IS NULL AND NOT EXISTS (
        SELECT 1 FROM labels_agreement l, object_portions_agreement p
        WHERE l.content_hash = p.content_hash AND l.relabelling IS NULL)
    ON CONFLICT (seq) DO NOTHING;
DROP TABLE object_portions_agreement;
