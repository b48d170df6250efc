-- One record of the agreement text the node's labels are under: `labels_agreement`
-- (0021). The search's portion labels (0020) kept their own, `object_portions_agreement`,
-- and each was checked at every open; now the relabel that brings the stored labels
-- under a new text (services/relabel.py) also has every version with portions wait for
-- its portion labels again, in its last transaction (store/sqlite.py,
-- _relabel_versions). Portion labels kept under a text other than the stored labels'
-- are dropped here and wait again, as that relabel would have them.
DELETE FROM object_portions WHERE NOT EXISTS (
    SELECT 1 FROM labels_agreement l, object_portions_agreement p
    WHERE l.content_hash = p.content_hash AND l.relabelling IS NULL);
INSERT OR IGNORE INTO object_portions_pending (seq)
    SELECT seq FROM objects WHERE has_portions <> 0 AND recalled IS NULL AND NOT EXISTS (
        SELECT 1 FROM labels_agreement l, object_portions_agreement p
        WHERE l.content_hash = p.content_hash AND l.relabelling IS NULL);
DROP TABLE object_portions_agreement;
