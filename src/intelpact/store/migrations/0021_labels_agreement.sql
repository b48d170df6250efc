-- The agreement text the stored labels were worked out under (services/relabel.py,
-- docs/controls.md "The agreement's lifecycle"). A version's `label_id` and `banner_id`
-- are worked out from its markings under the text in force when it is stored; an
-- amendment may map a national level or a TLP or ACS marking to another row, so a node
-- opened under another text works every version's labels out again, in batches, and
-- records the new text's content hash in the last batch's transaction:
-- `content_hash`: the text the labels are under (NULL, or no row: not recorded, a store
-- from before this migration, whose labels are all worked out again at the next open);
-- `relabelling`: the text they are being worked out under now (NULL: none). From the
-- first batch to the last, a process under another text writes no label (Store
-- .labelled_under): its writes are refused until it is restarted.
CREATE TABLE labels_agreement (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    content_hash  TEXT,
    relabelling   TEXT
);
